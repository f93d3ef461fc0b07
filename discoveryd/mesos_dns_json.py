"""mesos-dns `config.json` (CONTRACT 2.3): translated into discoveryd's YAML structure.

Each key must have the JSON type mesos-dns (Go) would unmarshal it into, checked before
translating (the translation formats and tests truthiness, which would hide a wrong type).
The result goes through the same validation as a YAML file; `mesos_dns_key` names the
mesos-dns key in those errors, so the operator reads the key they wrote.
"""

from __future__ import annotations

from typing import Any

from discoveryd.settings import ConfigError, domain_name, type_name

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


# The Go type of each key in mesos-dns' Config struct, as JSON types.
_INT, _BOOL, _STR, _LIST, _MAP = (int,), (bool,), (str,), (list,), (dict,)
MESOS_DNS_TYPES: dict[str, tuple[type, ...]] = {
    "zk": _STR, "masters": _LIST, "refreshSeconds": _INT, "ttl": _INT, "domain": _STR,
    "port": _INT, "resolvers": _LIST, "timeout": _INT, "listener": _STR, "externalon": _BOOL,
    "httpon": _BOOL, "httpport": _INT, "dnson": _BOOL, "SOAMname": _STR, "SOARname": _STR,
    "SOARefresh": _INT, "SOARetry": _INT, "SOAExpire": _INT, "SOAMinttl": _INT,
    "SOASerial": _INT, "IPSources": _LIST, "zkDetectionTimeout": _INT,
    "stateTimeoutSeconds": _INT, "enforceRFC952": _BOOL, "zoneResolvers": _MAP, "email": _STR,
    "recurseon": _BOOL,
}
# Our dotted key -> the mesos-dns key it was translated from (for error messages).
ORIGIN = {
    "mesos.zk": "zk", "mesos.masters": "masters", "mesos.refresh_seconds": "refreshSeconds",
    "mesos.zk_detection_timeout": "zkDetectionTimeout",
    "mesos.state_timeout": "stateTimeoutSeconds", "mesos.ip_sources": "IPSources",
    "mesos.enforce_rfc952": "enforceRFC952", "dns.domain": "domain", "dns.ttl": "ttl",
    "dns.listen": "listener/port", "dns.resolvers": "resolvers", "dns.timeout": "timeout",
    "dns.enabled": "dnson", "dns.zone_resolvers": "zoneResolvers", "dns.external": "externalon",
    "dns.soa.mname": "SOAMname", "dns.soa.rname": "SOARname/email",
    "dns.soa.refresh": "SOARefresh", "dns.soa.retry": "SOARetry", "dns.soa.expire": "SOAExpire",
    "dns.soa.minttl": "SOAMinttl", "http.listen": "listener/httpport",
}


def mesos_dns_key(loc: str) -> str:
    """"mesos.masters[0]" -> "masters[0]"; "dns.listen[0]" -> "listener/port"."""
    for ours, theirs in ORIGIN.items():
        if loc == ours or loc.startswith((ours + ".", ours + "[")):
            # a value composed of two keys has no item to point at
            return theirs if "/" in theirs else theirs + loc[len(ours):]
    return loc


def _type_errors(data: dict[str, Any]) -> list[str]:
    errors = []
    for key, value in data.items():
        want = MESOS_DNS_TYPES.get(key)
        # bool is an int in Python, not in JSON
        if want and (not isinstance(value, want) or (want is _INT and isinstance(value, bool))):
            errors.append(f"{key}: expected {type_name(want[0]())}, got {type_name(value)}")
    return errors


def looks_like_mesos_dns(data: dict[str, Any]) -> bool:
    """A top-level mapping with mesos-dns keys and none of our sections."""
    ours = {"mesos", "marathon", "dns", "haproxy", "http", "logging"}
    keys = set(data)
    return bool(keys) and not keys & ours and bool(keys & (MESOS_DNS_KEYS | MESOS_DNS_UNSUPPORTED))


def from_mesos_dns(data: dict[str, Any], warn: list[str]) -> dict[str, Any]:
    """Translate a mesos-dns config.json into our YAML structure (values unvalidated)."""
    data = {k: v for k, v in data.items() if v is not None}  # Go: null leaves the default
    g = data.get
    unknown = set(data) - MESOS_DNS_KEYS - MESOS_DNS_UNSUPPORTED
    for key in sorted(set(data) & MESOS_DNS_UNSUPPORTED):
        if key == "recurseon" and data[key] is not False:
            continue
        warn.append(f"{key}: mesos-dns key not supported by discoveryd, ignored")
    errors = [f"{k}: unknown mesos-dns configuration key" for k in sorted(unknown, key=str)]
    errors += _type_errors(data)
    if errors:
        raise ConfigError("; ".join(errors))
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
    try:
        base = domain_name(domain)
    except ValueError:
        base = "mesos"  # reported as `domain`; not again in the SOA names derived from it
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
    mname = g("SOAMname", "ns1." + base)
    soa["mname"] = str(mname).rstrip(".")
    rname = g("SOARname") or (str(g("email")).replace("@", ".") if g("email") else None)
    soa["rname"] = str(rname or "root.ns1." + base).rstrip(".")
    for src, dst in (("SOARefresh", "refresh"), ("SOARetry", "retry"), ("SOAExpire", "expire"),
                     ("SOAMinttl", "minttl")):
        if src in data:
            soa[dst] = data[src]
    dns["soa"] = soa
    http: dict[str, Any] = {"listen": None}
    if g("httpon", True):
        http["listen"] = f"{host}:{g('httpport', 8123)}"
    return {"mesos": mesos, "dns": dns, "http": http, "haproxy": {"enabled": False}}
