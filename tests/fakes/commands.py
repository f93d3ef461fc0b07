"""Stand-ins for validate_command and reload_command whose behaviour a test switches.

A `SwitchedCommand` is a real shell script that reads its mode from a file each time it
runs, so a test can make `haproxy -c` (or a reload) fail, hang or slow down for a while
and then work again, without restarting anything. Every run is logged with its pid; a
hanging or slow run also records the pid of the `sleep` child it waits on, so a test
can check that nothing is left behind when discoveryd kills it.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

MODES = ("ok", "fail", "fail-once", "hang", "slow")


class SwitchedCommand:
    """`path [ARGS]`: run `ok_command` (with the same arguments), or misbehave.

    ok: exec ok_command.  fail: exit 1.  fail-once: exit 1, then behave as ok.
    hang: wait on `sleep 600`.  slow: wait `slow_seconds` on a `sleep` child, then as ok.
    """

    def __init__(self, workdir: Path, name: str, ok_command: str,
                 slow_seconds: float = 1.0) -> None:
        self.dir = workdir / name
        self.dir.mkdir(parents=True)
        self.path = self.dir / "run.sh"
        mode, calls = shlex.quote(str(self.mode_file)), shlex.quote(str(self.calls_file))
        children = shlex.quote(str(self.dir / "children"))
        self.path.write_text(f"""#!/bin/sh
mode=$(cat {mode})
echo "$$ $mode start $*" >> {calls}
case "$mode" in
  fail) echo "simulated failure" >&2; exit 1 ;;
  fail-once) echo ok > {mode}; echo "simulated failure" >&2; exit 1 ;;
  hang) sleep 600 & echo "$!" >> {children}; wait; exit 0 ;;
  slow) sleep {slow_seconds} & echo "$!" >> {children}; wait ;;
esac
echo "$$ $mode run $*" >> {calls}
exec {ok_command}
""")
        self.path.chmod(0o755)
        self.set("ok")

    @property
    def mode_file(self) -> Path:
        return self.dir / "mode"

    @property
    def calls_file(self) -> Path:
        return self.dir / "calls"

    def set(self, mode: str) -> None:
        assert mode in MODES, mode
        self.mode_file.write_text(mode + "\n")

    def calls(self, stage: str = "start") -> list[tuple[int, str, str]]:
        """(pid, mode, arguments) of every run that reached `stage` (start, or run: past
        the fault)."""
        if not self.calls_file.exists():
            return []
        rows = [line.split(" ", 3) for line in self.calls_file.read_text().splitlines()]
        return [(int(r[0]), r[1], r[3] if len(r) > 3 else "") for r in rows
                if len(r) >= 3 and r[2] == stage]

    def children(self) -> list[int]:
        """The `sleep` children of hanging or slow runs."""
        path = self.dir / "children"
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def pids(self) -> list[int]:
        """Every script run and every child it started."""
        return [pid for pid, _, _ in self.calls()] + self.children()


def running(pid: int) -> bool:
    """True while `pid` is a live process (a zombie awaiting its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def still_running(pids: list[int]) -> list[int]:
    return [p for p in pids if p != os.getpid() and running(p)]
