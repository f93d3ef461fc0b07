"""Reload HAProxy with reload_command, saving server state first when configured."""

from __future__ import annotations

import asyncio
import os

from discoveryd.haproxy import master_socket
from discoveryd.haproxy.check import collect
from discoveryd.haproxy.files import write_file

RELOAD_TIMEOUT = 60.0


async def run_reload(command: str, timeout: float = RELOAD_TIMEOUT) -> tuple[bool, str]:
    """Run reload_command through the shell (operators write pipes and $(...) in it)."""
    proc = await asyncio.create_subprocess_shell(
        command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True)  # killable as a group
    code, out = await collect(proc, timeout)
    text = out.strip()
    if code is None:
        return False, f"reload command {text}"
    if code != 0:
        return False, f"exit {code}: {text}"
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
