"""marathon-lb labels of one app port, parsed and validated into a typed value.

Every value that can reach haproxy.cfg must first be printable ASCII of bounded length,
then match a strict pattern here, so a label can never inject a directive (newline, `#`,
quotes, spaces where none belong, `%` where HAProxy expands log-format variables). A bad
value raises `LabelError(reason)`; the caller skips that port only.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from discoveryd.model.marathon import App

# Lower-case ASCII only: with re.I, Python would also match "ſ" and the Kelvin sign "K".
# A DNS label is at most 63 characters, a name at most 253 (RFC 1035). "_" is allowed, as
# marathon-lb passes it: Host headers such as my_app.example.com exist in the wild.
HOST_RE = re.compile(r"^(?=.{1,253}$)(\*\.)?[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
                     r"(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$")
PATH_RE = re.compile(r"^/[A-Za-z0-9._~/%+-]*$")
# Redirect locations and Location rewrites are HAProxy log-format strings: "%H" would be
# expanded and a lone "%" breaks the file, so those paths take no "%".
LOG_FORMAT_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/+-]*$")
APP_ID_RE = re.compile(r"^(?=.{2,1024}$)/[A-Za-z0-9][A-Za-z0-9._/-]*$")
CERT_RE = re.compile(r"^/?[A-Za-z0-9_.@/-]+$")
# Words of characters that cannot start a comment, quote, escape or log-format variable;
# "!" for cipher strings ("ciphers HIGH:!aNULL"). haproxy -c and bisection judge the rest.
BIND_OPTIONS_RE = re.compile(r"^[A-Za-z0-9_.:/@=,+!-]+( [A-Za-z0-9_.:/@=,+!-]+)*$")
REALM_RE = re.compile(r"^[A-Za-z0-9_. -]+$")
USER_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
PASSWORD_RE = re.compile(r"^[A-Za-z0-9./$=+_-]+$")
GROUP_RE = re.compile(r"^[A-Za-z0-9_.*-]+$")
# HAProxy 2.6's algorithms with their options ("random(2)", "uri whole", "url_param sid
# check_post", "hdr(host) use_domain_only"): marathon-lb passes any value through, so every
# form HAProxy accepts must pass here too ("hash <expr>" is the one left out).
BALANCE_RE = re.compile(
    r"^(roundrobin|static-rr|leastconn|first|source|random(\([1-9][0-9]{0,3}\))?"
    r"|uri( (len|depth) [1-9][0-9]{0,3}| whole| path-only)*"
    r"|url_param [A-Za-z0-9_.-]+( check_post)?|hdr\([A-Za-z0-9_-]+\)( use_domain_only)?"
    r"|rdp-cookie(\([A-Za-z0-9_-]+\))?)$")
# marathon-lb's string_to_bool: these are true, every other value is false.
TRUE = frozenset({"true", "t", "yes", "y"})
# What a label that reaches haproxy.cfg may hold at all, before its own pattern: no control
# character (newline, CR, NUL, tab), nothing outside ASCII (zero-width and RTL marks, emoji,
# unicode look-alikes) and no 10 KB blobs.
PRINTABLE_RE = re.compile(r"[\x20-\x7e]*")
MAX_VALUE_LENGTH = 4096
# HAPROXY_{n}_<suffix> -> the skip reason of a malformed value. Labels not listed here
# (ENABLED, STICKY, REDIRECT_TO_HTTPS, USE_HSTS: booleans) never reach the text.
REASONS = {
    "GROUP": "bad_group", "VHOST": "bad_vhost", "PATH": "bad_path", "MODE": "bad_mode",
    "PORT": "bad_int", "BIND_ADDR": "bad_bind_addr", "BIND_OPTIONS": "bad_bind_options",
    "BALANCE": "bad_balance", "BACKEND_WEIGHT": "bad_int", "SSL_CERT": "bad_ssl_cert",
    "AUTH": "bad_auth", "HTTP_BACKEND_PROXYPASS_PATH": "bad_path",
    "HTTP_BACKEND_REVPROXY_PATH": "bad_path", "HTTP_BACKEND_REDIR": "bad_path",
    "BACKEND_NETWORK_ALLOWED_ACL": "bad_network", "BACKEND_HEALTHCHECK_PORT_INDEX": "bad_int",
}


class LabelError(ValueError):
    """A malformed label value; `reason` is a short, bounded metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Auth:
    realm: str
    user: str
    password: str  # crypted, as in an HAProxy userlist


@dataclass(frozen=True, slots=True)
class PortLabels:
    """What marathon-lb's HAPROXY_* labels say about one service port."""

    groups: tuple[str, ...] = ()
    enabled: bool = True
    vhosts: tuple[str, ...] = ()
    path: str | None = None
    mode: str | None = None  # None: decided by vhost / health check
    port: int | None = None
    bind_addr: str | None = None
    bind_options: str | None = None
    balance: str = "roundrobin"
    weight: int = 0
    sticky: bool = False
    redirect_to_https: bool = False
    hsts: bool = False
    ssl_certs: tuple[str, ...] = ()
    auth: Auth | None = None
    proxypass_path: str | None = None
    revproxy_path: str | None = None
    redirect_path: str | None = None
    allowed_networks: tuple[str, ...] = ()
    healthcheck_port_index: int | None = None


@dataclass(frozen=True, slots=True)
class Deployment:
    """Blue/green labels (HAPROXY_DEPLOYMENT_*) of an app."""

    group: str
    started_at: str
    target_instances: int | None
    new_instances: bool = False  # HAPROXY_DEPLOYMENT_NEW_INSTANCES present (bluegreen_deploy.py)


def shown(value: str, limit: int = 80) -> str:
    """A value as a log or error may show it: escaped to one ASCII line, bounded."""
    text = ascii(value)[1:-1]
    return text if len(text) <= limit else f"{text[:limit]}...({len(value)} chars)"


def _check(value: str, pattern: re.Pattern[str], reason: str, label: str) -> str:
    if not pattern.fullmatch(value):
        raise LabelError(reason, f"{label}={shown(value)}")
    return value


def _plain(value: str, reason: str, label: str) -> str:
    """The value, if printable ASCII of bounded length (checked before any strip or split:
    str.strip and str.split would silently drop unicode separators and control chars)."""
    if len(value) > MAX_VALUE_LENGTH or not PRINTABLE_RE.fullmatch(value):
        raise LabelError(reason, f"{label}={shown(value)}")
    return value


def _bool(value: str) -> bool:
    """As marathon-lb: "true", "t", "yes", "y" (any case) are true; anything else is false."""
    return value.strip().lower() in TRUE


def _paths(value: str, label: str) -> str:
    """HAPROXY_n_PATH: one or more space-separated `path_beg` prefixes, optionally "-i" first."""
    tokens = value.split()
    flags = tokens[:1] if tokens[:1] == ["-i"] else []
    prefixes = tokens[len(flags):]
    if not prefixes:
        raise LabelError("bad_path", f"{label}={shown(value)}")
    for p in prefixes:
        _check(p, PATH_RE, "bad_path", label)
    return " ".join(flags + prefixes)


def _int(value: str, label: str, lo: int, hi: int) -> int:
    v = value.strip()
    if not re.fullmatch(r"-?[0-9]{1,6}", v) or not lo <= int(v) <= hi:
        raise LabelError("bad_int", f"{label}={shown(value)}")
    return int(v)


def _list(value: str, sep: str | None = ",") -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(sep) if p.strip())


@functools.lru_cache(maxsize=4096)  # a handful of distinct values across thousands of apps
def parse_groups(value: str, label: str) -> tuple[str, ...]:
    _plain(value, "bad_group", label)
    return tuple(_check(g, GROUP_RE, "bad_group", label) for g in _list(value))


def _vhosts(value: str, label: str) -> tuple[str, ...]:
    """Host names, lower-cased. Non-ASCII names are refused, not guessed at: write the
    IDNA A-label ("xn--...") that browsers send in the Host header and in SNI."""
    return tuple(_check(h.lower(), HOST_RE, "bad_vhost", label) for h in _list(value))


def _auth(value: str, label: str) -> Auth:
    parts = value.split(":", 2)
    if len(parts) != 3:
        raise LabelError("bad_auth", f"{label} must be realm:user:password")
    realm, user, password = parts
    return Auth(_check(realm, REALM_RE, "bad_auth", label), _check(user, USER_RE, "bad_auth", label),
                _check(password, PASSWORD_RE, "bad_auth", label))


def _networks(value: str, label: str) -> tuple[str, ...]:
    out = []
    for cidr in _list(value, None):
        try:
            if "%" in cidr:  # an IPv6 scope id ("fe80::%eth0#x/64") is free text
                raise ValueError(cidr)
            out.append(str(ipaddress.ip_network(cidr, strict=False)))
        except ValueError:
            raise LabelError("bad_network", f"{label}={shown(cidr)}") from None
    return tuple(out)


def _bind_addr(value: str, label: str) -> str:
    if value == "*":
        return value
    try:
        if "%" in value:  # ip_address keeps a scope id verbatim, newlines included
            raise ValueError(value)
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise LabelError("bad_bind_addr", f"{label}={shown(value)}") from None


@functools.lru_cache(maxsize=4096)
def _defaults(groups: tuple[str, ...]) -> PortLabels:
    """PortLabels of a port with no HAPROXY_n_* label: one shared value per group list,
    as most ports of a large cluster are (a 20-field frozen dataclass costs to build)."""
    return PortLabels(groups=groups)


def parse_port_labels(labels: Mapping[str, str], index: int) -> PortLabels:
    """Parse HAPROXY_{index}_* (and the app-wide HAPROXY_GROUP); raises LabelError."""
    p = f"HAPROXY_{index}_"
    n = len(p)
    own = {k[n:]: v for k, v in labels.items() if k.startswith(p)}  # most apps: 0-3 keys
    get = own.get
    kw: dict[str, object] = {}
    group = get("GROUP")
    if group is not None:
        kw["groups"] = parse_groups(group, p + "GROUP")
    elif (group := labels.get("HAPROXY_GROUP")) is not None:
        kw["groups"] = parse_groups(group, "HAPROXY_GROUP")
    if not own:
        return _defaults(kw.get("groups", ()))  # type: ignore[arg-type]
    for key, value in own.items():
        if key in REASONS:
            _plain(value, REASONS[key], p + key)
    if (v := get("ENABLED")) is not None:
        kw["enabled"] = _bool(v)
    if (v := get("VHOST")) is not None:
        kw["vhosts"] = _vhosts(v, p + "VHOST")
    if (v := get("PATH")) is not None and v.strip():
        kw["path"] = _paths(v, p + "PATH")
    for key, field, pattern, reason in (
        ("HTTP_BACKEND_PROXYPASS_PATH", "proxypass_path", PATH_RE, "bad_path"),
        ("HTTP_BACKEND_REVPROXY_PATH", "revproxy_path", LOG_FORMAT_PATH_RE, "bad_path"),
        ("HTTP_BACKEND_REDIR", "redirect_path", LOG_FORMAT_PATH_RE, "bad_path"),
        ("BIND_OPTIONS", "bind_options", BIND_OPTIONS_RE, "bad_bind_options"),
        ("BALANCE", "balance", BALANCE_RE, "bad_balance"),
    ):
        if (v := get(key)) is not None and v.strip():
            kw[field] = _check(v.strip(), pattern, reason, p + key)
    if (v := get("MODE")) is not None:
        if v.strip().lower() not in ("http", "tcp"):
            raise LabelError("bad_mode", f"{p}MODE={shown(v)}")
        kw["mode"] = v.strip().lower()
    if (v := get("PORT")) is not None:
        kw["port"] = _int(v, p + "PORT", 1, 65535)
    if (v := get("BIND_ADDR")) is not None:
        kw["bind_addr"] = _bind_addr(v.strip(), p + "BIND_ADDR")
    if (v := get("BACKEND_WEIGHT")) is not None:
        kw["weight"] = _int(v, p + "BACKEND_WEIGHT", -99999, 99999)
    if "path" in kw and not kw.get("weight"):
        kw["weight"] = 1  # marathon-lb: a path rule of default weight 0 counts as weight 1
    for key, field in (("STICKY", "sticky"), ("REDIRECT_TO_HTTPS", "redirect_to_https"),
                       ("USE_HSTS", "hsts")):
        if (v := get(key)) is not None:
            kw[field] = _bool(v)
    if (v := get("SSL_CERT")) is not None:
        kw["ssl_certs"] = tuple(_check(c, CERT_RE, "bad_ssl_cert", p + "SSL_CERT")
                                for c in _list(v))
    if (v := get("AUTH")) is not None:
        kw["auth"] = _auth(v, p + "AUTH")
    if (v := get("BACKEND_NETWORK_ALLOWED_ACL")) is not None:
        kw["allowed_networks"] = _networks(v, p + "BACKEND_NETWORK_ALLOWED_ACL")
    if (v := get("BACKEND_HEALTHCHECK_PORT_INDEX")) is not None:
        kw["healthcheck_port_index"] = _int(v, p + "BACKEND_HEALTHCHECK_PORT_INDEX", 0, 1000)
    return PortLabels(**kw)  # type: ignore[arg-type]


def parse_deployment(app: App) -> Deployment | None:
    """Blue/green labels; None when the app is not part of a deployment group."""
    group = app.labels.get("HAPROXY_DEPLOYMENT_GROUP")
    if group is None:
        return None
    _plain(group, "bad_deployment_group", "HAPROXY_DEPLOYMENT_GROUP")
    group = "/" + group.strip().lstrip("/")
    _check(group, APP_ID_RE, "bad_deployment_group", "HAPROXY_DEPLOYMENT_GROUP")
    started = app.labels.get("HAPROXY_DEPLOYMENT_STARTED_AT", "")
    target = app.labels.get("HAPROXY_DEPLOYMENT_TARGET_INSTANCES")
    instances = None if target is None else _int(target, "HAPROXY_DEPLOYMENT_TARGET_INSTANCES",
                                                  0, 100000)
    return Deployment(group, started, instances,
                      "HAPROXY_DEPLOYMENT_NEW_INSTANCES" in app.labels)
