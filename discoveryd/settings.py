"""The one configuration schema: discoveryd YAML and mesos-dns config.json.

Both formats end up as the same validated `Settings` value; `run`, `check-config`
and SIGHUP reloads all go through `load_settings`, so they cannot disagree. Values are
checked strictly (a string is not a number, `true` is not a port) and every problem is
reported on one line naming its dotted key.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger("discoveryd.settings")

# Lower-case ASCII: with re.I, Python's [a-z] also matches "ſ" and the Kelvin sign.
LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# A value written verbatim into haproxy.cfg as one word: no space, quote, `#` or backslash.
HAPROXY_WORD_RE = re.compile(r"^[!$%&()*+,\-./0-9:;<=>?@A-Z\[\]^_`a-z{|}~]+$")
DURATION_RE = re.compile(r"^[0-9]+(us|ms|s|m|h|d)?$")  # an HAProxy time value
UINT32_MAX = 2**32 - 1  # SOA timers are 32-bit on the wire
MAX_ERRORS = 10  # reported per file; a 10,000-item list of wrong types is not 10,000 lines


class ConfigError(Exception):
    """A configuration problem; the message names the key and fits on one line."""


class _Section(BaseModel):
    # strict: YAML gives typed scalars, and coercing `ttl: "60"`, `enabled: 1` or
    # `http_port: yes` (YAML 1.1 reads it as true, lax mode as 1) would hide mistakes.
    # No inf/nan: `refresh_seconds: .inf` would silently mean "never".
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, strict=True,
                              allow_inf_nan=False,
                              defer_build=True)  # build validators on first use: faster CLI start


def split_host_port(value: str, default_port: int | None = None) -> tuple[str, int]:
    """Split "host:port", "[v6]:port", "v6" or "host" (when default_port is given)."""
    value = value.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep:
            raise ValueError(f"unbalanced '[' in {value!r}")
        port_s = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"junk after ']' in {value!r}")
    elif value.count(":") > 1:  # bare IPv6 address
        host, port_s = value, ""
    else:
        host, _, port_s = value.partition(":")
    if not host:
        raise ValueError(f"missing host in {value!r}")
    if not port_s:
        if default_port is None:
            raise ValueError(f"missing port in {value!r} (expected host:port)")
        return host, default_port
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"bad port {port_s!r} in {value!r}")
    return host, int(port_s)


def _check_ip(host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None


def domain_name(v: str) -> str:
    """A DNS name in lower case without the trailing dot; ASCII labels of at most 63
    characters, at most 253 in all (a longer one fails when packed into an answer)."""
    name = v.strip(".")
    if not name.isascii():
        raise ValueError(f"{v!r} is not an ASCII domain name (write IDNA names as xn--...)")
    name = name.lower()
    if not name or len(name) > 253 or not all(LABEL_RE.match(p) for p in name.split(".")):
        raise ValueError(f"{v!r} is not a valid domain name")
    return name


def _soa_name(v: str) -> str:
    domain_name(v)
    return v.strip(".")


def _haproxy_word(v: str) -> str:
    if not HAPROXY_WORD_RE.match(v):
        raise ValueError(f"{v!r} would not be one word in haproxy.cfg "
                         "(no spaces, quotes, '#', backslashes or non-ASCII)")
    return v


def _haproxy_time(v: str) -> str:
    if not DURATION_RE.match(v):
        raise ValueError(f"{v!r} is not an HAProxy time (a number with us, ms, s, m, h or d)")
    return v


def _master(v: str) -> str:
    split_host_port(v, 5050)
    return v


def _listen_addr(v: str) -> str:
    _check_ip(split_host_port(v)[0])
    return v


def _resolver(v: str) -> str:
    _check_ip(split_host_port(v, 53)[0])
    return v


def _http_url(v: str) -> str:
    if not re.match(r"^https?://[^/\s]+", v):
        raise ValueError(f"{v!r} is not an http(s) URL")
    return v.rstrip("/")


MasterAddr = Annotated[str, AfterValidator(_master)]
ListenAddr = Annotated[str, AfterValidator(_listen_addr)]
ResolverAddr = Annotated[str, AfterValidator(_resolver)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
SoaName = Annotated[str, AfterValidator(_soa_name)]
HAProxyWord = Annotated[str, AfterValidator(_haproxy_word)]
HAProxyTime = Annotated[str, AfterValidator(_haproxy_time)]


class MesosSettings(_Section):
    zk: str | None = None
    zk_detection_timeout: float = Field(30, ge=0)
    masters: list[MasterAddr] = []
    refresh_seconds: float = Field(60, gt=0)
    state_timeout: float = Field(5, gt=0)
    ip_sources: list[Literal["netinfo", "mesos", "docker", "host", "autoip"]] = [
        "netinfo",
        "mesos",
        "host",
    ]
    enforce_rfc952: bool = False
    scheme: Literal["http", "https"] = "http"

    @field_validator("zk")
    @classmethod
    def _zk(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith("zk://"):
            raise ValueError("must start with zk://")
        rest = v[len("zk://"):]
        hosts = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        if not hosts:
            raise ValueError("names no ZooKeeper host")
        for h in hosts.split(","):
            if h.count(":") > 1 and not h.startswith("["):  # kazoo: "bad hostname"
                raise ValueError(f"an IPv6 ZooKeeper host needs brackets: [{h}] or [addr]:port")
            split_host_port(h, 2181)
        return v


class MarathonSettings(_Section):
    urls: list[HttpUrl] = []
    events: bool = True
    refresh_seconds: float = Field(60, gt=0)
    timeout: float = Field(5, gt=0)
    auth: str | None = None  # "user:password" for HTTP basic auth; never shown by /v1/config
    stall_timeout: float = Field(60, gt=0)  # addition: a stream silent this long is reopened

    @field_validator("auth")
    @classmethod
    def _auth(cls, v: str | None) -> str | None:
        if v is not None and ":" not in v:
            raise ValueError("must be user:password")
        return v


class SoaSettings(_Section):
    mname: SoaName = "ns1.mesos"
    rname: SoaName = "root.ns1.mesos"
    refresh: int = Field(60, ge=0, le=UINT32_MAX)
    retry: int = Field(600, ge=0, le=UINT32_MAX)
    expire: int = Field(86400, ge=0, le=UINT32_MAX)
    minttl: int = Field(60, ge=0, le=UINT32_MAX)


class DnsSettings(_Section):
    enabled: bool = True
    domain: str = "mesos"
    listen: list[ListenAddr] = ["0.0.0.0:53"]
    ttl: int = Field(60, ge=0, le=2**31 - 1)
    external: bool = True
    resolvers: list[ResolverAddr] = []
    zone_resolvers: dict[str, list[ResolverAddr]] = {}
    timeout: float = Field(5, gt=0)
    soa: SoaSettings = SoaSettings()
    workers: int = Field(1, ge=1, le=64)  # processes answering queries (SO_REUSEPORT)
    # Additions: what one TCP client may hold (slow-loris clients must not starve others).
    tcp_idle_timeout: float = Field(10, gt=0)
    max_tcp_connections: int = Field(256, ge=1)

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        return domain_name(v)

    @field_validator("zone_resolvers")
    @classmethod
    def _zone_resolvers(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        out = {}
        for zone, servers in v.items():
            if not servers:
                raise ValueError(f"zone {zone!r} has no resolvers")
            out[domain_name(zone)] = servers
        return out


class HAProxySettings(_Section):
    enabled: bool = True
    group: str = "external"
    config_path: str = "/etc/haproxy/haproxy.cfg"
    templates_dir: str | None = None
    validate_command: str = "haproxy -c -f {path}"
    reload_command: str | None = None
    min_reload_interval: float = Field(1.0, ge=0)
    # Additions: a hung `haproxy -c` or reload must not stall the pipeline forever.
    validate_timeout: float = Field(60, gt=0)
    reload_timeout: float = Field(60, gt=0)
    retry_interval: float = Field(5.0, gt=0)  # addition: a failed cycle's retry without changes
    bind_address: HAProxyWord = "*"
    http_port: int = Field(80, ge=0, le=65535)
    https_port: int = Field(443, ge=0, le=65535)
    appid_port: int = Field(9091, ge=0, le=65535)
    stats_port: int = Field(9090, ge=0, le=65535)
    # The values below are written into haproxy.cfg: each must stay one word there.
    ssl_certs: list[HAProxyWord] = []
    # Additions (not in marathon-lb's flags): sized for a stock 20,000-fd HAProxy 2.6.
    maxconn: int = Field(8000, gt=0)
    hard_stop_after: HAProxyTime = "60s"
    stats_socket: HAProxyWord = "/var/run/haproxy/admin.sock"
    server_state_file: HAProxyWord | None = None

    @field_validator("stats_socket")
    @classmethod
    def _stats_socket(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must be an absolute path (HAProxy reads a relative one as host:port)")
        return v

    @field_validator("templates_dir")
    @classmethod
    def _templates_dir(cls, v: str | None) -> str | None:
        # A typo would otherwise ship the bundled layout without a word.
        if v is not None and not os.path.isdir(v):
            raise ValueError(f"{v} is not a directory")
        return v

    @field_validator("validate_command")
    @classmethod
    def _validate_cmd(cls, v: str) -> str:
        if "{path}" not in v:
            raise ValueError("must contain {path}")
        return v


class HttpSettings(_Section):
    listen: str | None = "127.0.0.1:8123"

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            split_host_port(v)
        return v


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class Settings(_Section):
    mesos: MesosSettings = MesosSettings()
    marathon: MarathonSettings = MarathonSettings()
    dns: DnsSettings = DnsSettings()
    haproxy: HAProxySettings = HAProxySettings()
    http: HttpSettings = HttpSettings()
    logging: LoggingSettings = LoggingSettings()

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with secrets masked (for /v1/config and logs)."""
        data = self.model_dump(mode="json")
        if data["marathon"]["auth"]:
            data["marathon"]["auth"] = "REDACTED"
        if data["mesos"]["zk"]:
            data["mesos"]["zk"] = redact_url(data["mesos"]["zk"])
        data["marathon"]["urls"] = [redact_url(u) for u in data["marathon"]["urls"]]
        return data


def redact_url(url: str) -> str:
    """Hide `user:pass@` credentials in a zk:// or http:// URL."""
    return re.sub(r"(://)[^/@]+@", r"\1REDACTED@", url)


YAML_TYPES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
              list: "a list", dict: "a mapping", type(None): "null"}


def type_name(value: Any) -> str:
    """What a YAML/JSON value is, in the words of the config file."""
    return YAML_TYPES.get(type(value), type(value).__name__)


def _loc_part(part: Any) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    text = str(part)
    if text == "[key]" or re.fullmatch(r"[A-Za-z0-9_-]+", text):
        return text
    return json.dumps(text)  # an odd key, shown quoted and escaped: one line, unambiguous


def format_loc(loc: tuple[Any, ...]) -> str:
    """('dns', 'listen', 0) -> "dns.listen[0]"."""
    return ".".join(_loc_part(p) for p in loc).replace(".[", "[") or "(top level)"


def _format_error(err: dict[str, Any], rename: Callable[[str], str] | None = None) -> str:
    loc = format_loc(tuple(err["loc"]))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"].endswith("_type") or err["type"] == "model_attributes_type":
        msg += f" (got {type_name(err.get('input'))})"
    return f"{rename(loc) if rename else loc}: {' '.join(msg.split())}"


def _summary(errors: list[str]) -> str:
    more = len(errors) - MAX_ERRORS
    return "; ".join(errors[:MAX_ERRORS]) + (f"; and {more} more" if more > 0 else "")


def parse_settings(data: Any) -> tuple[Settings, list[str]]:
    """Validate a decoded config document. Returns (settings, warnings)."""
    warnings: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"(top level): expected a mapping of sections, got {type_name(data)}")
    from discoveryd.mesos_dns_json import error_namer, from_mesos_dns, looks_like_mesos_dns

    rename = None
    if looks_like_mesos_dns(data):
        data, rename = from_mesos_dns(data, warnings), error_namer(data)
    try:
        return Settings.model_validate(data), warnings
    except ValidationError as e:
        raise ConfigError(_summary([_format_error(dict(x), rename) for x in e.errors()])) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently: `ttl: 5` further down would win over the `ttl: 60` the operator reads)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep)


def _read_text(path: str | Path) -> str:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror}") from None
    try:
        return raw.decode("utf-8-sig")  # a leading byte-order mark is harmless
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text "
                          f"(byte 0x{raw[e.start]:02x})") from None


def load_settings(path: str | Path) -> tuple[Settings, list[str]]:
    """Read and validate a YAML or mesos-dns JSON file; raises ConfigError."""
    text = _read_text(path)
    try:
        if Path(path).suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: line {e.lineno}: invalid JSON: {e.msg}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(f"{path}: {where}invalid YAML: {getattr(e, 'problem', e)}") from None
    except RecursionError:  # both parsers recurse per nesting level
        raise ConfigError(f"{path}: (top level): lists or mappings nested too deeply") from None
    if data is None:
        data = {}  # an empty or all-comment file sets no key: every default (CONTRACT 2)
    return parse_settings(data)
