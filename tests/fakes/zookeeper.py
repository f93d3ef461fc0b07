"""A real ZooKeeper server (Debian's `zookeeper` package) for integration tests.

tests/conftest.py registers its fixtures (zk_server, zk, zk_admin) for every test module.
One server runs per test session; every test gets a fresh path to use as its chroot.
`stop()` / `start()` restart it on the same port and data dir for outage tests.
"""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from tests.fakes.ports import free_port

JAR_DIRS = ("/usr/share/zookeeper", "/usr/share/java")
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"


def _classpath() -> str:
    for d in JAR_DIRS:
        jar = Path(d) / "zookeeper.jar"
        if jar.exists():  # its manifest's Class-Path names the dependencies
            return str(jar)
    pytest.skip("ZooKeeper (Debian package `zookeeper`) is not installed")


def four_letter(port: int, word: str, timeout: float = 2.0) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(word.encode())
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


class ZooKeeperServer:
    """A standalone ZooKeeper on 127.0.0.1:<free port> with its own data dir."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="discoveryd-zk-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        cfg = self.dir / "zoo.cfg"
        cfg.write_text(
            "tickTime=500\n"
            f"dataDir={self.dir / 'data'}\n"
            f"clientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\n"
            "4lw.commands.whitelist=*\n"
            "admin.enableServer=false\n"
            "maxClientCnxns=0\n"
            "minSessionTimeout=1000\n"
            "maxSessionTimeout=60000\n"
        )

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, deadline: float = 60.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = open(self.dir / "server.log", "ab")  # the child inherits it
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m", "-XX:+UseSerialGC", "-Dzookeeper.jmx.log4j.disable=true",
             "-cp", _classpath(), MAIN_CLASS, str(self.dir / "zoo.cfg")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        self.wait_ready(deadline)

    def wait_ready(self, deadline: float) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"zookeeper exited: {(self.dir / 'server.log').read_text()}")
            try:
                if four_letter(self.port, "ruok") == "imok" and "Mode:" in four_letter(
                        self.port, "srvr"):
                    return
            except OSError:
                pass
            time.sleep(0.1)  # polling a condition with a deadline
        raise TimeoutError(f"zookeeper on port {self.port} not ready after {deadline}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()  # like a crash: no clean session close
            self.proc.wait(timeout=30)
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


_server: ZooKeeperServer | None = None


def shared_server() -> ZooKeeperServer:
    """The session's one server, started on first use and killed at exit."""
    global _server
    if _server is None:
        _server = ZooKeeperServer()
        atexit.register(_server.destroy)
    _server.start()
    return _server


@dataclass
class ZkEnv:
    """What a test gets: the running server and a fresh path (chroot) to use."""

    server: ZooKeeperServer
    path: str

    @property
    def url(self) -> str:
        return f"zk://{self.server.hosts}{self.path}"


@pytest.fixture(scope="session")
def zk_server() -> ZooKeeperServer:
    server = shared_server()
    yield server
    server.destroy()


@pytest.fixture
def zk(zk_server: ZooKeeperServer) -> ZkEnv:
    zk_server.start()  # a previous outage test may have stopped it
    return ZkEnv(zk_server, f"/t-{uuid.uuid4().hex[:12]}/mesos")


@pytest.fixture
def zk_admin(zk: ZkEnv) -> KazooClient:
    """A kazoo client for the test to play the Mesos masters (their ephemeral nodes)."""
    client = KazooClient(hosts=zk.server.hosts, timeout=30)
    client.start(timeout=30)
    yield client
    client.stop()
    client.close()


def packed_ip(ip: str) -> int:
    """MasterInfo.ip: the IPv4 address as Mesos stores it (network byte order in a uint32)."""
    return struct.unpack("<I", socket.inet_aton(ip))[0]


def master_info(ip: str, port: int, hostname: str | None = None) -> dict:
    """The JSON MasterInfo a Mesos master writes into its `json.info_` znode. For an IPv6
    master the legacy uint32 `ip` holds 0 (it is IPv4 only) and the pid brackets the IP."""
    hostname = hostname or ip
    v6 = ":" in ip
    return {
        "address": {"hostname": hostname, "ip": ip, "port": port},
        "hostname": hostname,
        "id": f"{uuid.uuid4()}",
        "ip": 0 if v6 else packed_ip(ip),
        "pid": f"master@[{ip}]:{port}" if v6 else f"master@{ip}:{port}",
        "port": port,
        "version": "1.11.0",
    }


def register_master(client: KazooClient, path: str, ip: str, port: int,
                    hostname: str | None = None, data: bytes | None = None) -> str:
    """Register like Mesos does: ephemeral sequential `json.info_` node. Returns its path."""
    if data is None:
        data = json.dumps(master_info(ip, port, hostname)).encode()
    return client.create(f"{path}/json.info_", data, ephemeral=True, sequence=True, makepath=True)


def expire_session(hosts: str, session: tuple[int, bytes], timeout: float = 30.0) -> None:
    """Expire a live session for real, on the server: a second client attaches to it (same id
    and password), which moves the session onto its own connection, then closes it, which
    ends the session. The first client is told SESSION_EXPIRED when it reconnects (kazoo:
    LOST, then a new session). Blocking: run it in a thread from async tests."""
    other = KazooClient(hosts=hosts, client_id=session, timeout=timeout)
    other.start(timeout=timeout)
    other.stop()
    other.close()
