"""The HTTP API and the web UI (``flowguard api``)."""
