"""Mesos state -> the mesos-dns record set (docs/docs/naming.md of mesos-dns).

`build_records` is pure: no I/O, no clock, no logging. Hostnames are turned into
IPs by the `resolve` callable the caller passes (default: IP literals only), and
everything left out is returned in `RecordSet.skipped` for the caller to log.

Where mesos-dns would emit an unencodable label (over 63 bytes: a long task name plus its
hash and agent suffix) we shorten it deterministically (truncate + 5-char hash); a name over
255 bytes, which mesos-dns stores but can never answer, is left out. Both are reported.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence

from discoveryd.dns.labels import LabelFunc, domain_frag, label_func
from discoveryd.dns.recordset import RecordSet, Srv
from discoveryd.model.mesos import Framework, MesosState, MesosTask, canonical_ip
from discoveryd.settings import split_host_port

# host -> its IPs: at most one IPv4 and one IPv6, as mesos-dns's hostToIPs (a plain str
# is one IP; None or () when it does not resolve).
Resolve = Callable[[str], str | tuple[str, ...] | None]

ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"
MAX_LABEL = 63
MAX_NAME = 254  # presentation length with the trailing dot; 255 bytes on the wire
_SURROGATE = re.compile("[\ud800-\udfff]")


def hash_string(value: str) -> str:
    """First 5 z-base-32 characters of SHA-1(value), as mesos-dns's hashString. A lone
    surrogate (which Go's JSON decoder never produces) is hashed as the U+FFFD Go has."""
    try:
        data = value.encode()
    except UnicodeEncodeError:
        data = _SURROGATE.sub("\ufffd", value).encode()
    bits = int.from_bytes(hashlib.sha1(data).digest()[:4], "big")
    return "".join(ZBASE32[(bits >> (27 - 5 * i)) & 31] for i in range(5))


ip_literal = canonical_ip  # the default resolver: IP literals only


def slave_id_tail(slave_id: str) -> str:
    return slave_id.rsplit("-", 1)[-1].lower()


def fit_label(label: str) -> str:
    """A label of at most 63 bytes: long ones become a prefix plus a hash of the whole."""
    if len(label) <= MAX_LABEL:
        return label
    return label[: MAX_LABEL - 6].rstrip("-") + "-" + hash_string(label)


def _fit_dotted(name: str) -> str:
    return ".".join(map(fit_label, name.split(".")))


def _is_servable(name: str) -> bool:
    """Whether mesos-dns answers its raw (unsanitised) DiscoveryInfo name `name`: it stores
    every raw name, but its resolver only lower-cases the question, and a label with
    characters the wire form escapes (or an empty or over-long label) never matches."""
    return all(0 < len(p) <= MAX_LABEL and all(c in _RAW_CHARS for c in p)
               for p in name.split("."))


# Printable ASCII but upper case and what DNS presentation format escapes (miekg/dns).
_RAW_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + ".'@;()\"\\$")


class _Builder:
    """Accumulates records in insertion-ordered sets; one instance per build."""

    def __init__(self, domain: str, label: LabelFunc, resolve: Resolve) -> None:
        self.tail = "." + domain + "."
        self.label = label
        self.resolve = resolve
        self.a: dict[str, dict[str, None]] = {}
        self.aaaa: dict[str, dict[str, None]] = {}
        self.srv: dict[str, dict[Srv, None]] = {}
        self.skipped: list[tuple[str, str]] = []
        self._too_long: set[str] = set()

    def skip(self, what: str, reason: str) -> None:
        self.skipped.append((what, reason))

    def _fits(self, name: str) -> bool:
        if len(name) <= MAX_NAME:
            return True
        if name not in self._too_long:
            self._too_long.add(name)
            self.skip(f"name {name[:60]}...", f"longer than 255 bytes ({len(name)}), left out")
        return False

    def add_ip(self, name: str, ip: str) -> bool:
        """Add an A or AAAA record; False when it was already there."""
        table = self.aaaa if ":" in ip else self.a
        ips = table.get(name)
        if ips is None:
            if not self._fits(name):
                return False
            table[name] = {ip: None}
            return True
        if ip in ips:
            return False
        ips[ip] = None
        return True

    def add_srv(self, name: str, srv: Srv) -> None:
        srvs = self.srv.get(name)
        if srvs is None:
            if self._fits(name):
                self.srv[name] = {srv: None}
        else:
            srvs[srv] = None

    def resolve_ips(self, host: str, what: str) -> tuple[str, ...]:
        got = self.resolve(host) if host else None
        ips = (got,) if isinstance(got, str) else tuple(got or ())
        if not ips:
            self.skip(what, f"host {host!r} does not resolve to an IP address")
        return ips

    def resolve_ip(self, host: str, what: str) -> str | None:
        """The first IP (IPv4 when there is one): masters are one address each."""
        ips = self.resolve_ips(host, what)
        return ips[0] if ips else None

    def result(self) -> RecordSet:
        return RecordSet(
            a={k: tuple(v) for k, v in self.a.items()},
            aaaa={k: tuple(v) for k, v in self.aaaa.items()},
            srv={k: tuple(v) for k, v in self.srv.items()},
            skipped=tuple(self.skipped),
        )


def build_records(
    mesos: MesosState,
    *,
    domain: str,
    masters: Sequence[str],
    ip_sources: Sequence[str],
    enforce_rfc952: bool,
    mname: str,
    listen_ips: Sequence[str],
    resolve: Resolve = ip_literal,
) -> RecordSet:
    """Every mesos-dns record for `mesos`. `masters`: "host:port", leader first;
    `listen_ips`: the DNS listener IPs already expanded (0.0.0.0 -> host IPs)."""
    b = _Builder(domain.strip(".").lower(), label_func(enforce_rfc952), resolve)
    fnames = {f.id: _framework_fragment(b, f) for f in mesos.frameworks}
    _framework_records(b, mesos.frameworks, fnames)
    slave_ips = _slave_records(b, mesos)
    _listener_records(b, mname, listen_ips)
    _master_records(b, mesos, masters)
    for f in mesos.frameworks:
        fname = fnames[f.id]
        if not fname:
            if f.tasks:
                b.skip(f"framework {f.id}", f"{len(f.tasks)} task(s) left out with it")
            continue
        for task in f.tasks:
            if task.state != "TASK_RUNNING":
                continue
            host_ips = slave_ips.get(task.slave_id)
            if host_ips is None:
                b.skip(f"task {task.id}", f"agent {task.slave_id} is not in the state")
                continue
            _task_records(b, task, fname, host_ips, ip_sources)
    return b.result()


def _framework_fragment(b: _Builder, f: Framework) -> str:
    """The framework's labels as mesos-dns makes them (each part sanitised, so at most 63
    bytes); never shortened as a whole: a name it makes too long is left out by itself."""
    frag = domain_frag(f.name, b.label)
    if not frag:
        b.skip(f"framework {f.id}", f"name {f.name!r} has no valid DNS characters")
    return frag


def _framework_records(b: _Builder, frameworks: Iterable[Framework], fnames: dict) -> None:
    for f in frameworks:
        fname = fnames[f.id]
        host, port = f.host_port()
        if not fname or not host:
            continue
        ips = b.resolve_ips(host, f"framework {f.id}")
        if not ips:
            continue
        name = fname + b.tail
        for ip in ips:
            b.add_ip(name, ip)
        if port is not None:
            b.add_srv("_framework._tcp." + name, Srv(name, port))


def _slave_records(b: _Builder, mesos: MesosState) -> dict[str, tuple[str, ...]]:
    """slave.domain and _slave._tcp; returns agent id -> its IPs (for "host" and .slave)."""
    name = "slave" + b.tail
    slave_ips: dict[str, tuple[str, ...]] = {}
    for s in mesos.slaves:
        ips = slave_ips[s.id] = b.resolve_ips(s.pid.host, f"agent {s.id}")
        for ip in ips:
            b.add_ip(name, ip)
        if ips:
            b.add_srv("_slave._tcp" + b.tail, Srv(name, s.pid.port))
    return slave_ips


def _listener_records(b: _Builder, mname: str, listen_ips: Sequence[str]) -> None:
    name = mname.strip(".").lower() + "."
    for ip in listen_ips:
        canonical = ip_literal(ip)
        if canonical is None:
            b.skip(f"listener {ip}", "not an IP address")
        else:
            b.add_ip(name, canonical)


def _master_records(b: _Builder, mesos: MesosState, masters: Sequence[str]) -> None:
    """leader, master, masterN, _leader and _master SRVs, numbered as mesos-dns does:
    masters in list order, the leader appended when it is not in the list."""
    leader_host, leader_port = mesos.leader_host_port()
    leader_ip = b.resolve_ip(leader_host, "leader")
    all_masters = "master" + b.tail
    if leader_ip is not None:
        b.add_ip("leader" + b.tail, leader_ip)
        b.add_ip(all_masters, leader_ip)
        for proto in ("._tcp", "._udp"):
            b.add_srv("_leader" + proto + b.tail, Srv("leader" + b.tail, leader_port))
    idx, leader_numbered = 0, False
    for master in masters:
        try:
            host, port = split_host_port(master)
        except ValueError as e:
            b.skip(f"master {master}", str(e))
            continue
        ip = b.resolve_ip(host, f"master {master}")
        if ip is None:
            continue
        is_leader = ip == leader_ip and port == leader_port
        if is_leader and leader_numbered:
            continue  # the leader listed twice
        if not is_leader and not b.add_ip(all_masters, ip):
            continue  # a duplicate master
        _numbered_master(b, idx, ip, port)
        idx += 1
        leader_numbered = leader_numbered or is_leader
    if not leader_numbered and leader_ip is not None:
        _numbered_master(b, idx, leader_ip, leader_port)


def _numbered_master(b: _Builder, idx: int, ip: str, port: int) -> None:
    name = f"master{idx}{b.tail}"
    b.add_ip(name, ip)
    for proto in ("._tcp", "._udp"):
        b.add_srv("_master" + proto + b.tail, Srv(name, port))


def task_ips(task: MesosTask, sources: Sequence[str], host_ips: tuple[str, ...]) -> tuple[str, ...]:
    """The first IPv4 and the first IPv6 found in `sources`, in order of preference."""
    return first_of_each_family(ip for source in sources
                                for ip in _source_ips(task, source, host_ips))


def first_of_each_family(ips: Iterable[str]) -> tuple[str, ...]:
    """The first IPv4 and the first IPv6 of canonical `ips`, IPv4 first (mesos-dns's
    ipsTo4And6); stops reading once it has both."""
    v4 = v6 = None
    for ip in ips:
        if ":" in ip:
            v6 = v6 or ip
        else:
            v4 = v4 or ip
        if v4 and v6:
            break
    return tuple(ip for ip in (v4, v6) if ip)


def _source_ips(task: MesosTask, source: str, host_ips: tuple[str, ...]) -> Iterable[str]:
    if source == "netinfo":
        return [ip for ni in task.network_infos for ip in ni.ips]
    if source == "mesos":
        return task.mesos_ips
    if source == "docker":
        return task.docker_ips
    if source == "host":
        return host_ips
    if source == "autoip" and task.discovery and task.discovery.ports:
        # The first discovery port's network-scope label decides (mesos-dns autoIPs).
        labels = dict(task.discovery.ports[0].labels)
        scope, network = labels.get("network-scope", ""), labels.get("network-name", "")
        if scope in ("", "host"):
            return host_ips
        if scope == "container":
            return [ip for ni in task.network_infos if not network or ni.name == network
                    for ip in ni.ips]
    return ()


def _task_names(b: _Builder, task: MesosTask) -> list[str]:
    """The task's name label(s): the DiscoveryInfo name sanitised, after mesos-dns's legacy
    raw form when that can be asked for (`_is_servable`: "my_svc" is), else the task name."""
    if task.discovery is None:
        names = [b.label(task.name)]
    else:
        raw, clean = task.discovery.name, b.label(task.discovery.name)
        names = [clean]
        if raw != clean:
            if _is_servable(raw):
                names.insert(0, raw)
            else:
                b.skip(f"task {task.id}", f"raw DiscoveryInfo name {raw!r} cannot be asked "
                       f"for (upper case, or not encodable); served as {clean!r} only")
    if not names[-1]:
        b.skip(f"task {task.id}", "name has no valid DNS characters")
        return []
    return names


def _task_records(
    b: _Builder,
    task: MesosTask,
    fname: str,
    host_ips: tuple[str, ...],
    ip_sources: Sequence[str],
) -> None:
    names = _task_names(b, task)
    if not names:
        return
    ips = task_ips(task, ip_sources, host_ips)
    suffix = "-" + hash_string(task.id) + "-" + slave_id_tail(task.slave_id)
    tail = b.tail
    for name in names:
        dotted = "." in name
        canonical = _fit_dotted(name + suffix) if dotted else fit_label(name + suffix)
        srv_label = _fit_dotted("_" + name) if dotted else fit_label("_" + name)
        arec, crec = name + "." + fname, canonical + "." + fname
        for ip in ips:
            b.add_ip(arec + tail, ip)
            b.add_ip(crec + tail, ip)
        for ip in host_ips:
            b.add_ip(arec + ".slave" + tail, ip)
            b.add_ip(crec + ".slave" + tail, ip)
        # Port resources: SRV under .slave (and at the top without DiscoveryInfo),
        # pointing at the agent's canonical name.
        slave_target = crec + ".slave" + tail
        for port in task.ports:
            srv = Srv(slave_target, port)
            for proto in ("._tcp.", "._udp."):
                base = srv_label + proto + fname
                b.add_srv(base + ".slave" + tail, srv)
                if task.discovery is None:
                    b.add_srv(base + tail, srv)
        if task.discovery is not None:
            _discovery_srvs(b, task, srv_label, fname, crec + tail)


def _discovery_srvs(b: _Builder, task: MesosTask, srv_label: str, fname: str, target: str) -> None:
    assert task.discovery is not None
    for port in task.discovery.ports:
        proto = b.label(port.protocol)
        port_label = b.label(port.name)
        srv = Srv(target, port.number)
        for p in (proto,) if proto else ("tcp", "udp"):
            name = f"{srv_label}.{fit_label('_' + p)}.{fname}{b.tail}"
            b.add_srv(name, srv)
            if port_label:
                b.add_srv(fit_label("_" + port_label) + "." + name, srv)
