"""The one configuration schema: discoveryd YAML and mesos-dns config.json.

Both formats end up as the same validated `Settings` value; `run`, `check-config`
and SIGHUP reloads all go through `load_settings`, so they cannot disagree.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger("discoveryd.settings")

LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.I)


class ConfigError(Exception):
    """A configuration problem; the message names the key and fits on one line."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True,
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
            split_host_port(h, 2181)
        return v


class MarathonSettings(_Section):
    urls: list[HttpUrl] = []
    events: bool = True
    refresh_seconds: float = Field(60, gt=0)
    timeout: float = Field(5, gt=0)
    auth: str | None = None  # "user:password" for HTTP basic auth; never shown by /v1/config

    @field_validator("auth")
    @classmethod
    def _auth(cls, v: str | None) -> str | None:
        if v is not None and ":" not in v:
            raise ValueError("must be user:password")
        return v


class SoaSettings(_Section):
    mname: str = "ns1.mesos"
    rname: str = "root.ns1.mesos"
    refresh: int = Field(60, ge=0)
    retry: int = Field(600, ge=0)
    expire: int = Field(86400, ge=0)
    minttl: int = Field(60, ge=0)


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

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        v = v.strip(".").lower()
        if not v or not all(LABEL_RE.match(p) for p in v.split(".")):
            raise ValueError(f"{v!r} is not a valid domain name")
        return v

    @field_validator("zone_resolvers")
    @classmethod
    def _zone_resolvers(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        out = {}
        for zone, servers in v.items():
            if not servers:
                raise ValueError(f"zone {zone!r} has no resolvers")
            out[zone.strip(".").lower()] = servers
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
    bind_address: str = "*"
    http_port: int = Field(80, ge=0, le=65535)
    https_port: int = Field(443, ge=0, le=65535)
    appid_port: int = Field(9091, ge=0, le=65535)
    stats_port: int = Field(9090, ge=0, le=65535)
    ssl_certs: list[str] = []
    # Additions (not in marathon-lb's flags): sized for a stock 20,000-fd HAProxy 2.6.
    maxconn: int = Field(8000, gt=0)
    hard_stop_after: str = "60s"
    stats_socket: str = "/var/run/haproxy/admin.sock"
    server_state_file: str | None = None

    @field_validator("stats_socket")
    @classmethod
    def _stats_socket(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must be an absolute path (HAProxy reads a relative one as host:port)")
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


def _format_error(err: dict[str, Any], prefix: tuple[str, ...] = ()) -> str:
    loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in prefix + tuple(err["loc"]))
    loc = loc.replace(".[", "[")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{loc or '(top level)'}: {msg}"


def parse_settings(data: Any) -> tuple[Settings, list[str]]:
    """Validate a decoded config document. Returns (settings, warnings)."""
    warnings: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("(top level): expected a mapping of sections")
    from discoveryd.mesos_dns_json import from_mesos_dns, looks_like_mesos_dns

    if looks_like_mesos_dns(data):
        data = from_mesos_dns(data, warnings)
    try:
        return Settings.model_validate(data), warnings
    except ValidationError as e:
        raise ConfigError("; ".join(_format_error(dict(x)) for x in e.errors())) from None


def load_settings(path: str | Path) -> tuple[Settings, list[str]]:
    """Read and validate a YAML or mesos-dns JSON file; raises ConfigError."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: line {e.lineno}: invalid JSON: {e.msg}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(f"{path}: {where}invalid YAML: {getattr(e, 'problem', e)}") from None
    return parse_settings(data)
