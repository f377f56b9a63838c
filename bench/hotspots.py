"""py-spy on a daemon during a run, and where its time went.

py-spy (``.venv/bin/pip install py-spy``) samples wall-clock time, idle samples
included, so the share spent waiting in epoll tells a CPU-bound daemon from one that
waits on something. It pauses the daemon for each sample, which costs it a few per
cent.
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from processes import BIN, spawn, stop

IDLE_FRAME = "trio/_core/_io_epoll.py:EpollIOManager.get_events"


@contextlib.contextmanager
def profiling(pid: int, output: Path | None, workdir: Path) -> Iterator[None]:
    """py-spy on the process for the duration of the block; raw stacks go to ``output``."""
    if output is None:
        yield
        return
    log = workdir / "py-spy.log"
    args = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--rate", "200", "--idle"]
    args += ["--format", "raw", "--output", str(output)]
    with contextlib.ExitStack() as stack:
        process = spawn(stack, args, log)
        deadline = time.monotonic() + 10
        while b"Sampling process" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"py-spy did not start: {log.read_text()}")
            time.sleep(0.05)
        yield
        stop(process, signal.SIGINT, wait_s=60)


def hot_spots(path: Path, top: int = 12, own_package: str = "webhookd") -> str:
    """Where the process's time went, from py-spy's raw (collapsed) stacks.

    Shares are of all samples, idle ones included, so they add up across sections:
    self time by function and by package (``own_package`` by module), and inclusive
    time in its own functions below the entry point.
    """
    mine = f"{own_package}/"
    own: Counter[str] = Counter()
    package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = [re.sub(r"^(.*) \((.*?)(?::\d+)?\)$", r"\2:\1", f) for f in stack.split(";")]
        own[frames[-1]] += count
        source = frames[-1].rpartition(":")[0]
        package[source if source.startswith(mine) else source.split("/")[0]] += count
        for frame in set(frames):
            if frame.startswith(mine) and not frame.startswith(f"{mine}cli.py"):
                inclusive[frame] += count
    idle = own[IDLE_FRAME] / total
    del own[IDLE_FRAME]
    lines = [f"  {total:,} samples; {idle:.1%} waiting in epoll, the rest on CPU or runnable"]
    sections = (
        ("self time by function", own),
        ("self time by package", package),
        (f"inclusive time in {own_package} functions", inclusive),
    )
    for title, counts in sections:
        lines.append(f"  {title}, top {top}:")
        lines += [f"    {n / total:6.1%}  {name}" for name, n in counts.most_common(top)]
    return "\n".join(lines)
