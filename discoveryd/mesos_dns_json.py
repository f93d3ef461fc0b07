"""mesos-dns `config.json` (CONTRACT 2.3): translated into discoveryd's YAML structure.

The result goes through the same validation as a YAML file, so errors name our keys.
"""

from __future__ import annotations

from typing import Any

from discoveryd.settings import ConfigError

# mesos-dns key -> meaning is handled explicitly in _from_mesos_dns; these are
# accepted and ignored with a warning because discoveryd has no equivalent.
MESOS_DNS_UNSUPPORTED = {
    "mesosCredentials", "mesosAuthentication", "CACertFile", "certFile", "keyFile",
    "mesosHTTPSon", "SRVRecordDefaultWeight", "setTruncateBit", "httpListener",
    "recurseon", "IPSources_v6", "enumerationOn",
}
MESOS_DNS_KEYS = {
    "zk", "masters", "refreshSeconds", "ttl", "domain", "port", "resolvers", "timeout",
    "listener", "externalon", "httpon", "httpport", "dnson", "SOAMname", "SOARname",
    "SOARefresh", "SOARetry", "SOAExpire", "SOAMinttl", "IPSources", "zkDetectionTimeout",
    "stateTimeoutSeconds", "enforceRFC952", "zoneResolvers", "email", "SOASerial",
}


def looks_like_mesos_dns(data: dict[str, Any]) -> bool:
    """A top-level mapping with mesos-dns keys and none of our sections."""
    ours = {"mesos", "marathon", "dns", "haproxy", "http", "logging"}
    keys = set(data)
    return bool(keys) and not keys & ours and bool(keys & (MESOS_DNS_KEYS | MESOS_DNS_UNSUPPORTED))


def from_mesos_dns(data: dict[str, Any], warn: list[str]) -> dict[str, Any]:
    """Translate a mesos-dns config.json into our YAML structure (values unvalidated)."""
    g = data.get
    unknown = set(data) - MESOS_DNS_KEYS - MESOS_DNS_UNSUPPORTED
    for key in sorted(set(data) & MESOS_DNS_UNSUPPORTED):
        if key == "recurseon" and data[key] is not False:
            continue
        warn.append(f"{key}: mesos-dns key not supported by discoveryd, ignored")
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown mesos-dns configuration key")
    mesos: dict[str, Any] = {}
    if g("zk"):
        mesos["zk"] = g("zk")
    if "masters" in data:
        mesos["masters"] = g("masters") or []
    for src, dst in (("refreshSeconds", "refresh_seconds"), ("zkDetectionTimeout",
                     "zk_detection_timeout"), ("stateTimeoutSeconds", "state_timeout"),
                     ("IPSources", "ip_sources"), ("enforceRFC952", "enforce_rfc952")):
        if src in data:
            mesos[dst] = data[src]
    if "zkDetectionTimeout" in data and data["zkDetectionTimeout"] == 0:
        mesos["zk_detection_timeout"] = 30
    domain = g("domain", "mesos")
    dns: dict[str, Any] = {"domain": domain}
    listener, port = g("listener", "0.0.0.0"), g("port", 53)
    host = f"[{listener}]" if ":" in str(listener) else listener
    dns["listen"] = [f"{host}:{port}"]
    for src, dst in (("ttl", "ttl"), ("resolvers", "resolvers"), ("timeout", "timeout"),
                     ("dnson", "enabled"), ("zoneResolvers", "zone_resolvers")):
        if src in data:
            dns[dst] = data[src]
    external = g("externalon", True) and g("recurseon", True) is not False
    dns["external"] = external
    soa: dict[str, Any] = {}
    mname = g("SOAMname", "ns1." + str(domain))
    soa["mname"] = str(mname).rstrip(".")
    rname = g("SOARname") or (str(g("email")).replace("@", ".") if g("email") else None)
    soa["rname"] = str(rname or "root.ns1." + str(domain)).rstrip(".")
    for src, dst in (("SOARefresh", "refresh"), ("SOARetry", "retry"), ("SOAExpire", "expire"),
                     ("SOAMinttl", "minttl")):
        if src in data:
            soa[dst] = data[src]
    dns["soa"] = soa
    http: dict[str, Any] = {"listen": None}
    if g("httpon", True):
        http["listen"] = f"{host}:{g('httpport', 8123)}"
    return {"mesos": mesos, "dns": dns, "http": http, "haproxy": {"enabled": False}}
