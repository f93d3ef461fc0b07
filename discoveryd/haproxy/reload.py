"""Reload HAProxy with reload_command, saving server state first when configured."""

from __future__ import annotations

import asyncio
import os

from discoveryd.haproxy import master_socket
from discoveryd.haproxy.files import write_file

RELOAD_TIMEOUT = 60.0


async def run_reload(command: str, timeout: float = RELOAD_TIMEOUT) -> tuple[bool, str]:
    """Run reload_command through the shell (operators write pipes and $(...) in it)."""
    proc = await asyncio.create_subprocess_shell(
        command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel on 3.11
            out, _ = await proc.communicate()
    except (TimeoutError, asyncio.CancelledError) as e:
        proc.kill()
        await proc.wait()
        if isinstance(e, asyncio.CancelledError):
            raise
        return False, f"reload command timed out after {timeout:.0f}s"
    text = out.decode(errors="replace").strip()
    if proc.returncode != 0:
        return False, f"exit {proc.returncode}: {text}"
    return True, text


async def save_server_state(stats_socket: str, state_file: str) -> bool:
    """Dump `show servers state` so the new process keeps health and weights."""
    if not os.path.exists(stats_socket):
        return False
    try:
        state = await master_socket.command(stats_socket, "show servers state", timeout=5)
    except (TimeoutError, OSError):
        return False
    await asyncio.to_thread(write_file, state_file, state)
    return True
