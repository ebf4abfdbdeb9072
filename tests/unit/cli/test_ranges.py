"""The progress line ``replay --from-kafka`` and ``rehearse`` write on stderr."""

from __future__ import annotations

import io

from flowguard.cli.ranges import ProgressLine


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_line_is_rewritten_in_place() -> None:
    out = Terminal()
    progress = ProgressLine("reading fg.events", out)
    progress.last -= 1  # as if the last update were a second ago
    progress(250, 1000)
    progress(500, 1000)  # too soon after the first: not written
    progress.done()
    text = out.getvalue()
    assert text.startswith("\rreading fg.events:  25.0% (250 of 1,000 records, ")
    assert "50.0%" not in text
    assert text.endswith("\rreading fg.events: 500 records in 0.0 s\x1b[K\n")
    assert text.count("\n") == 1


def test_elsewhere_plain_lines_at_an_interval_and_a_last_one() -> None:
    out = io.StringIO()
    progress = ProgressLine("reading fg.events", out, interval_seconds=3600)
    progress(10, 20)  # within the interval: nothing yet
    progress.last -= 3600
    progress(15, 20)
    progress.done()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("reading fg.events:  75.0% (15 of 20 records, ")
    assert lines[1].startswith("reading fg.events: 15 records in ")
    assert "\r" not in out.getvalue()
