"""The machine's process table, read from /proc: what `make run` (or run_local) started,
and whether any of it is still alive. For the tests that stop the local stack."""

from __future__ import annotations

import time
from pathlib import Path

Process = tuple[int, str, str]  # pid, start time (jiffies since boot), program
PROGRAMS = ("redis-server", "celery", "gunicorn", "run_local.py", "make")


def process_table() -> dict[int, tuple[int, str, list[str]]]:
    """pid -> (parent pid, start time, argv) of every live (not zombie) process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            raw = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            argv = [word.decode(errors="replace") for word in raw if word]
            table[int(entry.name)] = (int(fields[1]), fields[19], argv)
    return table


def program(argv: list[str]) -> str:
    """The stack's program a command line runs (redis-server, celery, ...), else its start."""
    words = [Path(word).name for word in argv]
    for name in PROGRAMS:
        if any(word.startswith(name) for word in words):
            return name
    return " ".join(words[:3])


def children(pid: int) -> dict[int, str]:
    """The direct children of `pid`: pid -> command line."""
    return {child: " ".join(row[2]) for child, row in process_table().items() if row[0] == pid}


def has_home(pid: int, home: Path) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"CHESTNET_HOME={home}".encode() + b"\0" in environ


def processes_of(root: int, home: Path) -> set[Process]:
    """`root`'s descendants, and any process with this CHESTNET_HOME (one that escaped the
    tree: Redis replaces its environment with its title, so the tree is what finds it)."""
    table = process_table()
    parents: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        parents.setdefault(ppid, []).append(pid)
    tree, frontier = {root}, [root]
    while frontier:
        found = parents.get(frontier.pop(), [])
        tree.update(found)
        frontier += found
    marked = {pid for pid in table if has_home(pid, home)}
    return {(pid, table[pid][1], program(table[pid][2])) for pid in tree | marked if pid in table}


def wait_for_exit(processes: set[Process], home: Path, timeout: float) -> set[Process]:
    """Those of `processes` (same pid and start time) or with this CHESTNET_HOME still alive
    after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        table = process_table()
        left = {p for p in processes if p[0] in table and table[p[0]][1] == p[1]}
        left |= {(pid, r[1], program(r[2])) for pid, r in table.items() if has_home(pid, home)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)
