"""``flowguard replay --from-kafka``: the records a file replay of the same events prints."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from click.testing import CliRunner, Result

from flowguard.cli import main as cli
from tests.integration.cli import workflows
from tests.integration.cli.conftest import Published, iso_ms, publish_events, two_clusters


def replay(*args: str) -> Result:
    return CliRunner().invoke(cli, ["replay", *args])


def file_of(path: Path, events: list[Published]) -> Path:
    path.write_bytes(b"".join(item.value + b"\n" for item in events))
    return path


def test_from_kafka_prints_what_the_file_replay_prints(
    cli_env: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    start_ms = int(time.time() * 1000) - 3_600_000
    events = two_clusters(start_ms)
    events.append(Published(b"a/bad", b"{not json", events[-1].timestamp_ms + 1))
    asyncio.run(publish_events(kafka_bootstrap, cli_env, events))
    flows = str(workflows.write(tmp_path / "live", **workflows.LIVE))

    from_file = replay("--workflows", flows, "--events", str(file_of(tmp_path / "all", events)))
    assert from_file.exit_code == 0, from_file.output
    from_kafka = replay("--workflows", flows, "--from-kafka", "--since", "2h")
    assert from_kafka.exit_code == 0, from_kafka.output
    lines = from_kafka.stdout.splitlines()
    assert len(lines) > 50  # retries, an open breaker, orphans, notices and pages
    markers = ('"type":"retry"', '"type":"webhook"', '"type":"pagerduty"', '"transition":"opened"')
    for marker in markers:
        assert any(marker in line for line in lines), marker
    assert from_kafka.stdout == from_file.stdout
    assert from_file.stderr.splitlines()[-1] == from_kafka.stderr.splitlines()[-1]  # the counts
    assert "1 malformed" in from_kafka.stderr
    bad = next(line for line in from_kafka.stderr.splitlines() if "skipped" in line)
    assert bad.startswith(f"{cli_env}.events[")
    assert "]@" in bad
    assert ": skipped: not valid JSON: unexpected character" in bad
    # Not a terminal: a plain last line of progress.
    assert f"reading {cli_env}.events: {len(events):,} records in" in from_kafka.stderr

    # One cluster, and a part of the range: what a file of just those events prints.
    cut = len(events) * 2 // 3
    part = [e for e in events[:cut] if e.key.startswith(b"b/")]
    since, until = iso_ms(start_ms), iso_ms(events[cut].timestamp_ms)
    one = replay("--workflows", flows, "--from-kafka", "--cluster", "b",
                 "--since", since, "--until", until)  # fmt: skip
    assert one.exit_code == 0, one.output
    expected = replay("--workflows", flows, "--events", str(file_of(tmp_path / "b", part)))
    assert one.stdout == expected.stdout
    assert 0 < len(one.stdout.splitlines()) < len(lines)


def test_bad_ranges_name_the_option(cli_env: str, tmp_path: Path) -> None:
    flows = str(workflows.write(tmp_path / "live", **workflows.LIVE))
    bad = replay("--workflows", flows, "--from-kafka", "--since", "yesterday")
    assert bad.exit_code == 2
    assert "Invalid value for '--since': 'yesterday': expected a duration" in bad.output
    bad = replay("--workflows", flows, "--from-kafka", "--since", "1h", "--until", "2h")
    assert bad.exit_code == 2
    assert "--until must be later than --since" in bad.output
    missing = replay("--workflows", flows, "--from-kafka")
    assert missing.exit_code == 2
    assert "--since is required with --from-kafka" in missing.output
    both = replay("--workflows", flows, "--from-kafka", "--since", "1h", "--events", "-")
    assert "give either --events FILE or --from-kafka" in both.output
