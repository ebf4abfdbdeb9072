"""``python -m flowguard``: the same as the ``flowguard`` command."""

from flowguard.cli import main

main()
