"""A bulk run's ``error`` filter is a user regex like ``error_pattern`` (issue 16, item 2): it
runs on RE2, in time linear in the message, and what RE2 cannot run is refused naming the
field. An editor's ``POST /api/remediate/preview`` selects on the API's event loop, so a
backtracking pattern there would stall every request.

The catastrophic match runs in a child process with a deadline: on a backtracking engine it
never finishes, and a C-level match cannot be interrupted in-process.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from flowguard.remediate import Candidate, Filter

_MATCH = """
import sys, time
from flowguard.remediate import Candidate, Filter
where = Filter(error=sys.argv[1])
task = Candidate(cluster="c", task_id="t", at=0.0, state="failed", error_message=sys.argv[2])
started = time.perf_counter()
where.matches(task)
print(time.perf_counter() - started)
"""


def test_a_catastrophic_error_filter_returns_at_once() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _MATCH, "(a+)+$", "a" * 100_000 + "!"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert float(done.stdout) < 0.5


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "backreferences"),
        (r"timed(?= out)", "lookahead"),
        (r"(?<!not )found", "lookbehind"),
    ],
)
def test_what_re2_cannot_run_is_refused_naming_the_field(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=rf"^error: not a regular expression: {reason}.*RE2"):
        Filter(error=pattern)


def test_the_error_filter_still_searches_the_message() -> None:
    where = Filter(error="timed? ?out")

    def failed(message: str) -> Candidate:
        return Candidate(cluster="c", task_id="t", at=0.0, state="failed", error_message=message)

    assert where.matches(failed("read timed out"))
    assert not where.matches(failed("refused"))
