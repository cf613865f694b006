"""CPU time and RSS of a process tree, read from /proc (Linux only)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # comm may contain spaces; fields after the closing paren are fixed-position.
    return raw[raw.rindex(")") + 2 :].split()


def tree(root: int) -> list[int]:
    """root and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of the given processes (all their threads, live and exited)."""
    total = 0
    for pid in pids:
        try:
            f = _stat_fields(pid)
        except OSError:
            continue
        total += int(f[11]) + int(f[12])
    return total / TICK


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def workers_rss_mb(root: int) -> list[float]:
    """RSS of every process in the tree (supervisor and workers), largest first."""
    return sorted((rss_mb(p) for p in tree(root)), reverse=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, SIGKILL if it is still there after 10 s; returns once the process is gone."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
