"""Validate a candidate file with validate_command (`haproxy -c -f {path}`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from dataclasses import dataclass

VALIDATE_TIMEOUT = 60.0
KILL_GRACE = 5.0  # seconds to wait for the output pipe to close after killing the group


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    output: str
    timed_out: bool = False


async def run_command(argv: list[str], timeout: float) -> tuple[int | None, str]:
    """Run a program without a shell; (exit code or None if killed, combined output)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    return await collect(proc, timeout)


async def collect(proc: asyncio.subprocess.Process, timeout: float) -> tuple[int | None, str]:
    """A started process's (exit code, combined output); on timeout or cancel its whole
    process group is killed, and then the code is None.

    The process must lead its own group (start_new_session=True): killing only the
    process would leave a wrapper script's children (`sleep`, `haproxy -c`, ...) running
    and holding the output pipe, and waiting for the pipe would then hang as long as they.
    """
    try:
        async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel on 3.11
            out, _ = await proc.communicate()
    except (TimeoutError, asyncio.CancelledError) as e:
        await _kill_group(proc)
        if isinstance(e, asyncio.CancelledError):
            raise
        return None, f"timed out after {timeout:g}s"
    return proc.returncode or 0, out.decode(errors="replace")


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    # Bounded: a descendant that left the group (setsid) may keep the pipe open forever.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KILL_GRACE):
            await proc.wait()


async def validate(command: str, path: str, timeout: float = VALIDATE_TIMEOUT) -> CheckResult:
    """Split the command like a shell would, then substitute {path} as one argument."""
    argv = [path if a == "{path}" else a.replace("{path}", path) for a in shlex.split(command)]
    try:
        code, out = await run_command(argv, timeout)
    except OSError as e:
        return CheckResult(False, f"cannot run {argv[0]}: {e.strerror}")
    if code is None:
        return CheckResult(False, f"validation {out}", timed_out=True)
    return CheckResult(code == 0, out.strip())
