"""Summarize py-spy's collapsed stacks (``--format raw --threads --idle``), thread by thread.

    python bench/stacks.py /tmp/profile/worker-0-0.txt [--top 15] [--match flowguard/]

For each thread: its samples, the share spent waiting (the innermost frame is a blocking call:
the event loop's ``select``, a lock, a queue, a sleep), then the functions that hold the most
samples by themselves (self) and with what they call (inclusive). ``--match`` keeps only the
inclusive rows whose frame contains the text (``flowguard/``: our own code's share).
bench/latency.py ``--profile DIR`` writes these files for the bridge and every worker.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

#: Innermost frames that mean the thread is blocked, not computing.
WAITS = ("EpollSelector.select", "Condition.wait", "Event.wait (threading.py", "Lock.acquire",
         "Queue.get (queue.py", "sleep", "_wait_for_tstate_lock", "poll (")  # fmt: skip


def waits(frame: str) -> bool:
    return any(blocking in frame for blocking in WAITS)


def load(path: Path) -> dict[str, list[tuple[list[str], int]]]:
    """Stacks by thread: (frames outermost first, samples)."""
    threads: dict[str, list[tuple[list[str], int]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        thread, *frames = stack.split(";")
        threads[thread.split(": ", 1)[-1]].append((frames, int(count)))
    return threads


def summarize(path: Path, top: int, match: str) -> str:
    lines = [f"## {path.name}"]
    threads = load(path)
    everything = sum(c for stacks in threads.values() for _, c in stacks) or 1
    for thread, stacks in sorted(threads.items(), key=lambda t: -sum(c for _, c in t[1])):
        total = sum(c for _, c in stacks)
        waiting = sum(c for frames, c in stacks if frames and waits(frames[-1]))
        own, inclusive = Counter[str](), Counter[str]()
        for frames, count in stacks:
            if frames and not waits(frames[-1]):
                own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
        lines.append(f"\n### thread {thread}: {total / everything:.0%} of the samples, "
                     f"{waiting / total:.0%} of its own waiting")  # fmt: skip
        lines.append("self (computing):")
        lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
        lines.append(f"inclusive{f' ({match})' if match else ''}:")
        rows = [(f, n) for f, n in inclusive.most_common() if match in f][:top]
        lines += [f"  {n / total:6.1%}  {frame}" for frame, n in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--match", default="")
    args = parser.parse_args()
    print("\n\n".join(summarize(path, args.top, args.match) for path in args.files))


if __name__ == "__main__":
    main()
