"""mesos-dns `config.json` (CONTRACT 2.3): translated into discoveryd's YAML structure.

Each key must have the JSON type mesos-dns (Go) would unmarshal it into, checked before
translating (the translation formats and tests truthiness, which would hide a wrong type).
The result goes through the same validation as a YAML file; `mesos_dns_key` names the
mesos-dns key in those errors, so the operator reads the key they wrote.

Keys match case-insensitively and unknown keys are ignored with a warning, because that is
how Go's encoding/json reads mesos-dns's file: `"Masters"` and `"refreshseconds"` work there.
discoveryd's own sections may sit beside the mesos-dns keys (CONTRACT 2.3: the HAProxy half
is off "unless added with discoveryd keys"); their values win.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from discoveryd.settings import ConfigError, type_name

# mesos-dns key -> meaning is handled explicitly in _from_mesos_dns; these are
# accepted and ignored with a warning because discoveryd has no equivalent.
MESOS_DNS_UNSUPPORTED = {
    "mesosCredentials", "mesosAuthentication", "CACertFile", "certFile", "keyFile",
    "mesosHTTPSon", "SRVRecordDefaultWeight", "setTruncateBit", "recurseon", "IPSources_v6",
    "enumerationOn",
}
MESOS_DNS_KEYS = {
    "zk", "masters", "refreshSeconds", "ttl", "domain", "port", "resolvers", "timeout",
    "listener", "externalon", "httpon", "httpport", "dnson", "SOAMname", "SOARname",
    "SOARefresh", "SOARetry", "SOAExpire", "SOAMinttl", "IPSources", "zkDetectionTimeout",
    "stateTimeoutSeconds", "enforceRFC952", "zoneResolvers", "email", "SOASerial",
    "httpListener",
}
# Lower-cased key -> the spelling used here (Go matches JSON keys case-insensitively).
_CANONICAL = {k.lower(): k for k in MESOS_DNS_KEYS | MESOS_DNS_UNSUPPORTED}


# The Go type of each key in mesos-dns' Config struct, as JSON types.
_INT, _BOOL, _STR, _LIST, _MAP = (int,), (bool,), (str,), (list,), (dict,)
MESOS_DNS_TYPES: dict[str, tuple[type, ...]] = {
    "zk": _STR, "masters": _LIST, "refreshSeconds": _INT, "ttl": _INT, "domain": _STR,
    "port": _INT, "resolvers": _LIST, "timeout": _INT, "listener": _STR, "externalon": _BOOL,
    "httpon": _BOOL, "httpport": _INT, "dnson": _BOOL, "SOAMname": _STR, "SOARname": _STR,
    "SOARefresh": _INT, "SOARetry": _INT, "SOAExpire": _INT, "SOAMinttl": _INT,
    "SOASerial": _INT, "IPSources": _LIST, "zkDetectionTimeout": _INT,
    "stateTimeoutSeconds": _INT, "enforceRFC952": _BOOL, "zoneResolvers": _MAP, "email": _STR,
    "recurseon": _BOOL, "httpListener": _STR,
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
    "dns.soa.minttl": "SOAMinttl", "http.listen": "httpListener/httpport",
}


def mesos_dns_key(loc: str) -> str:
    """"mesos.masters[0]" -> "masters[0]"; "dns.listen[0]" -> "listener/port"."""
    for ours, theirs in ORIGIN.items():
        if loc == ours or loc.startswith((ours + ".", ours + "[")):
            # a value composed of two keys has no item to point at
            return theirs if "/" in theirs else theirs + loc[len(ours):]
    return loc


def _type_errors(data: dict[str, Any], written: dict[str, str]) -> list[str]:
    errors = []
    for key, value in data.items():
        want = MESOS_DNS_TYPES.get(key)
        # bool is an int in Python, not in JSON
        if want and (not isinstance(value, want) or (want is _INT and isinstance(value, bool))):
            errors.append(f"{written[key]}: expected {type_name(want[0]())}, "
                          f"got {type_name(value)}")
    return errors


SECTIONS = frozenset({"mesos", "marathon", "dns", "haproxy", "http", "logging"})


def looks_like_mesos_dns(data: dict[str, Any]) -> bool:
    """A mesos-dns config: mesos-dns keys and none of our sections, or, beside our sections,
    `masters` or `zk` (one of which mesos-dns requires). A stray `ttl:` at the top of a
    discoveryd YAML stays an unknown-key error (CONTRACT 2.1), not a change of format."""
    keys = {k.lower() for k in data if isinstance(k, str) and k not in SECTIONS}
    if not keys & set(_CANONICAL):
        return False
    return not set(data) & SECTIONS or bool(keys & {"masters", "zk"})


def error_namer(data: dict[str, Any]) -> Callable[[str], str]:
    """Names a validation error's location as the operator wrote it: the mesos-dns key it
    was translated from, or the dotted key of a discoveryd section given in the file."""
    def name(loc: str) -> str:
        node: Any = data
        for part in loc.split("[", 1)[0].split("."):
            if not isinstance(node, dict) or part not in node:
                return mesos_dns_key(loc)
            node = node[part]
        return loc
    return name


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def _canonical(data: dict[str, Any], warn: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Keys spelled as here (a later spelling of the same key wins, as in Go), null values
    dropped (Go leaves the default), unknown keys warned about; and canonical -> as written."""
    out: dict[str, Any] = {}
    written: dict[str, str] = {}
    for key, value in data.items():
        canon = _CANONICAL.get(str(key).lower())
        if canon is None:
            warn.append(f"{key}: not a mesos-dns configuration key, ignored")
            continue
        out.pop(canon, None)
        if value is not None:
            out[canon], written[canon] = value, str(key)
    return out, written


def from_mesos_dns(data: dict[str, Any], warn: list[str]) -> dict[str, Any]:
    """Translate a mesos-dns config.json into our YAML structure (values unvalidated), with
    any discoveryd sections of the same file merged over it."""
    sections = {k: v for k, v in data.items() if k in SECTIONS}
    translated = _translate({k: v for k, v in data.items() if k not in SECTIONS}, warn)
    if "haproxy" in sections:  # added with discoveryd keys: on unless they say otherwise
        translated.pop("haproxy")
    return _merge(translated, sections)


def _translate(data: dict[str, Any], warn: list[str]) -> dict[str, Any]:
    data, written = _canonical(data, warn)
    g = data.get
    for key in sorted(set(data) & MESOS_DNS_UNSUPPORTED):
        if key == "recurseon":
            if data[key] is False:  # mesos-dns: only the RA bit of its own answers
                warn.append(f"{written[key]}: false only clears the RA bit in mesos-dns; "
                            "discoveryd sets RA when it forwards (dns.external), ignored")
            continue
        warn.append(f"{written[key]}: mesos-dns key not supported by discoveryd, ignored")
    errors = _type_errors(data, written)
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
    listener, port = g("listener", "0.0.0.0"), g("port", 53)
    host = f"[{listener}]" if ":" in str(listener) else listener
    dns["listen"] = [f"{host}:{port}"]
    for src, dst in (("ttl", "ttl"), ("resolvers", "resolvers"), ("timeout", "timeout"),
                     ("dnson", "enabled"), ("zoneResolvers", "zone_resolvers")):
        if src in data:
            dns[dst] = data[src]
    if g("timeout") == 0:
        dns["timeout"] = 5  # mesos-dns: 0 means its default
    dns["external"] = g("externalon", True)  # recurseon does not stop forwarding there
    soa: dict[str, Any] = {}
    mname = g("SOAMname", "ns1.mesos")  # mesos-dns's defaults, whatever the domain
    soa["mname"] = str(mname).rstrip(".")
    rname = g("SOARname") or g("email")
    soa["rname"] = str(rname or "root.ns1.mesos").replace("@", ".").rstrip(".")
    for src, dst in (("SOARefresh", "refresh"), ("SOARetry", "retry"), ("SOAExpire", "expire"),
                     ("SOAMinttl", "minttl")):
        if src in data:
            soa[dst] = data[src]
    dns["soa"] = soa
    http: dict[str, Any] = {"listen": None}
    if g("httpon", True):  # on httpListener, every interface by default: never `listener`
        http_host = str(g("httpListener") or "0.0.0.0")
        http_host = f"[{http_host}]" if ":" in http_host else http_host
        http["listen"] = f"{http_host}:{g('httpport', 8123)}"
    return {"mesos": mesos, "dns": dns, "http": http, "haproxy": {"enabled": False}}
