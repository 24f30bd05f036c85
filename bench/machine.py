"""What the benchmarks say about the machine they ran on and the CPU a process used, and the small
statistics they all use (median, spread)."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import apsw


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc; NaN once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def filesystem_of(path: Path) -> str:
    """The mount point and filesystem type holding ``path`` (fsync costs depend on it)."""
    best, fstype = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mount = parts[1]
                inside = str(path).startswith(mount.rstrip("/") + "/") or str(path) == mount
                if inside and len(mount) > len(best):
                    best, fstype = mount, parts[2]
    except OSError:
        pass
    return f"{fstype} on {best or '?'}"


def machine_info(workdir: Path) -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "apsw": apsw.apsw_version(),
        "sqlite": apsw.sqlite_lib_version(),
        "aiohttp": aiohttp.__version__,
        "nats_py": importlib.metadata.version("nats-py"),
        "filesystem": filesystem_of(workdir.resolve()),
        "loadavg_at_start": os.getloadavg(),
    }


def code_state() -> str:
    """The commit the nodes ran, and which source files had uncommitted changes at the start."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"commit {head}" + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


# ---------------------------------------------------------------------------------- shared by the benchmarks
def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> float:
    med = median(values)
    return (max(values) - min(values)) / med if values and med else float("nan")


def child_pid(parent: int, comm: str) -> int | None:
    """The pid of ``parent``'s child whose command name is ``comm`` (node1's nats-server)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index(b"(") + 1 : stat.rindex(b")")].decode(errors="replace")
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        if ppid == parent and name == comm:
            return int(entry)
    return None


def print_table(headers: list[str], table: list[list[str]], left: int) -> None:
    """A Markdown table: the first ``left`` columns aligned left, the others right."""
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        cells = [
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(cells) + " |"

    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for t in table:
        print(line(t))
