"""Validate a candidate file with validate_command (`haproxy -c -f {path}`)."""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass

VALIDATE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    output: str


async def run_command(argv: list[str], timeout: float) -> tuple[int, str]:
    """Run a program without a shell; (exit code, combined output). Never blocks the loop."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    code, out = await collect(proc, timeout)
    return (-1 if code is None else code), out


async def collect(proc: asyncio.subprocess.Process, timeout: float) -> tuple[int | None, str]:
    """A started process's (exit code, combined output); killed on timeout or cancel, and
    then the code is None."""
    try:
        async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel on 3.11
            out, _ = await proc.communicate()
    except (TimeoutError, asyncio.CancelledError) as e:
        proc.kill()
        await proc.wait()
        if isinstance(e, asyncio.CancelledError):
            raise
        return None, f"timed out after {timeout:.0f}s"
    return proc.returncode or 0, out.decode(errors="replace")


async def validate(command: str, path: str, timeout: float = VALIDATE_TIMEOUT) -> CheckResult:
    """Split the command like a shell would, then substitute {path} as one argument."""
    argv = [path if a == "{path}" else a.replace("{path}", path) for a in shlex.split(command)]
    try:
        code, out = await run_command(argv, timeout)
    except OSError as e:
        return CheckResult(False, f"cannot run {argv[0]}: {e.strerror}")
    return CheckResult(code == 0, out.strip())
