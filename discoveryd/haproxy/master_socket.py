"""Talk to HAProxy's master CLI (-S) and stats socket; a tiny reload tool for reload_command.

    python -m discoveryd.haproxy.master_socket reload /run/haproxy-master.sock

HAProxy 2.6's master `reload` answers nothing, so the result is read from `show proc`:
the master line counts reloads and failed reloads ("2 [failed: 1]"); a reload
succeeded when the count moved and the failure count did not.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time

RELOADS_RE = re.compile(r"^\d+\s+master\s+(\d+)\s+\[failed:\s*(\d+)\]", re.M)


async def command(path: str, line: str, timeout: float = 10.0) -> str:
    """Send one CLI command to a unix socket and return the whole answer."""
    async def talk() -> str:
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()  # the master CLI answers and closes only after EOF
            return (await reader.read()).decode(errors="replace")
        finally:
            writer.close()

    async with asyncio.timeout(timeout):
        return await talk()


def parse_reloads(show_proc: str) -> tuple[int, int] | None:
    """(reloads, failed reloads) from the master line of `show proc`."""
    m = RELOADS_RE.search(show_proc)
    return (int(m.group(1)), int(m.group(2))) if m else None


async def reload(path: str, timeout: float = 30.0) -> tuple[bool, str]:
    """Reload through the master socket and wait for the outcome."""
    before = parse_reloads(await command(path, "show proc"))
    if before is None:
        return False, "no master line in 'show proc' (is this the master socket, -S?)"
    await command(path, "reload")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            now = parse_reloads(await command(path, "show proc"))
        except (TimeoutError, OSError):
            now = None  # the master re-executes itself while reloading
        if now is not None and now[0] > before[0]:
            if now[1] > before[1]:
                return False, "HAProxy refused the new configuration (reload failed)"
            return True, f"reloaded ({now[0]} reloads)"
        await asyncio.sleep(0.05)  # poll interval while waiting for the master
    return False, f"no reload seen within {timeout:.0f}s"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("reload", "show-proc"):
        print("usage: python -m discoveryd.haproxy.master_socket reload|show-proc SOCKET",
              file=sys.stderr)
        return 2
    try:
        if argv[0] == "show-proc":
            print(asyncio.run(command(argv[1], "show proc")), end="")
            return 0
        ok, detail = asyncio.run(reload(argv[1]))
    except (TimeoutError, OSError) as e:
        print(f"{argv[1]}: {e}", file=sys.stderr)
        return 1
    print(detail, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
