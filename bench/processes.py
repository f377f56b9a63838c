"""Child processes of a benchmark, the CPU time they and the machine used, their memory.

Every figure comes from ``/proc``: CPU seconds per process (``/proc/<pid>/stat``) and
for the whole machine (``/proc/stat``), resident memory (``/proc/<pid>/status``), so
no process needs to cooperate.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BIN = Path(sys.executable).parent


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait_s: float = 20) -> None:
    """Signal, wait, then kill: no child outlives the benchmark."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spawn(stack: contextlib.ExitStack, args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """A child in its own session, so Ctrl-C reaches only us and we stop it in order."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    stack.callback(stop, process)
    return process


def cpu_s(pids: Sequence[int]) -> float:
    """User + system CPU seconds the processes used so far, from /proc."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds the machine was busy so far (all cores), from /proc/stat.

    Busy is every column of the ``cpu`` line up to steal but idle and iowait; steal
    counts too, as CPU time the benchmark could not have.
    """
    ticks = [int(field) for field in Path("/proc/stat").read_text().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """CPU that processes other than ours have used since it was made, in cores."""

    def __init__(self, ours: Sequence[int]) -> None:
        self._ours = ours
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float]:
        return time.monotonic(), machine_busy_s(), cpu_s(self._ours) + time.process_time()

    def cores(self) -> float:
        wall_s, machine_s, ours_s = (
            b - a for a, b in zip(self._start, self._sample(), strict=True)
        )
        return (machine_s - ours_s) / wall_s


def cpu_per_item(before: dict[str, float], after: dict[str, float], items: int) -> dict[str, float]:
    """Microseconds of CPU per request or delivery, by process role."""
    return {role: (after[role] - before[role]) * 1e6 / max(1, items) for role in before}


def rss_bytes(pid: int) -> int:
    """Resident memory of a process now (``VmRSS`` in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    raise ValueError(f"/proc/{pid}/status has no VmRSS: the process is gone")


def load_average() -> float:
    """The 1-minute load average: above ~0.3 before the run, something else is busy."""
    return os.getloadavg()[0]


def interpreter() -> str:
    """Which Python runs the daemons and clients: its build moves every CPU figure
    (docs/scaling.md, "The interpreter")."""
    version = ".".join(str(part) for part in sys.version_info[:3])
    return f"{sys.implementation.name} {version} at {Path(sys.executable).resolve()}"
