"""Free loopback ports for servers the tests start."""

import socket


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (DNS servers and named bind both)."""
    while True:
        with socket.socket() as t, socket.socket(type=socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
