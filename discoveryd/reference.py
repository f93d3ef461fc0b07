"""The configuration reference in the README, generated from the settings schema.

`python -m discoveryd.reference README.md` rewrites the block between the markers; a test
fails when the README and the schema disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from discoveryd.settings import Settings

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"

HELP = {
    "mesos.zk": "`zk://[user:pass@]h1:2181,h2:2181/mesos`: follow the leading master through ZooKeeper (IPv6 hosts in brackets: `[fd00::1]:2181`)",
    "mesos.zk_detection_timeout": "seconds without a ZooKeeper leader before falling back to `masters`",
    "mesos.masters": "static masters `host:port` (IP or hostname), used without zk or when it has no leader",
    "mesos.refresh_seconds": "full state re-fetch interval (leader changes and Marathon task events fetch sooner)",
    "mesos.state_timeout": "seconds for one `/master/state` request",
    "mesos.ip_sources": "task IP preference: `netinfo`, `mesos`, `docker`, `host`, `autoip`",
    "mesos.enforce_rfc952": "RFC 952 labels instead of RFC 1123",
    "mesos.scheme": "`http` or `https` for the masters",
    "marathon.urls": "Marathon URLs, tried in order, failing over",
    "marathon.events": "hold `/v2/events` open; `false` polls every `refresh_seconds`",
    "marathon.refresh_seconds": "full re-sync interval even while events flow",
    "marathon.timeout": "seconds for one Marathon request",
    "marathon.auth": "`user:password` for HTTP basic auth (redacted in `/v1/config` and logs); `user:pass@` in a `marathon.urls` entry works too and is sent the same way; `marathon.auth` wins if both are set",
    "marathon.stall_timeout": "seconds without a byte on `/v2/events` (events or keep-alives) before the stream is reopened and re-synced (addition)",
    "dns.enabled": "serve DNS",
    "dns.domain": "the authoritative domain",
    "dns.listen": "addresses served on UDP and TCP; IPv6 as `[::]:53`",
    "dns.ttl": "TTL of every record",
    "dns.external": "forward names outside `domain`; `false` answers REFUSED",
    "dns.resolvers": "upstream `ip` or `ip:port`; empty = nameservers of `/etc/resolv.conf`",
    "dns.zone_resolvers": "per-zone upstreams, longest suffix wins: `{weave: [172.17.0.1]}`; a zone inside `domain` (`consul.mesos`) is forwarded rather than answered from records (needs `external`)",
    "dns.timeout": "seconds per upstream try",
    "dns.soa.mname": "SOA primary name server (also gets an A record: the DNS listener's IPs)",
    "dns.soa.rname": "SOA responsible mailbox",
    "dns.soa.refresh": "SOA refresh", "dns.soa.retry": "SOA retry", "dns.soa.expire": "SOA expire",
    "dns.soa.minttl": "SOA minimum TTL (negative caching)",
    "dns.workers": "processes answering queries on the same sockets (SO_REUSEPORT); one per "
                   "spare core raises the query rate (addition)",
    "dns.tcp_idle_timeout": "seconds a TCP client may go without sending a whole query or taking an answer before it is closed (addition)",
    "dns.max_tcp_connections": "TCP connections kept open; a new one beyond it closes the least recently active (addition)",
    "haproxy.enabled": "render haproxy.cfg (only when `marathon.urls` is set)",
    "haproxy.group": "serve apps whose `HAPROXY_GROUP` matches; `*` = every app",
    "haproxy.config_path": "the live haproxy.cfg; candidates are written next to it",
    "haproxy.templates_dir": "directory whose `*.j2` files override the bundled templates one by one (must exist)",
    "haproxy.validate_command": "validation command; `{path}` is the candidate file",
    "haproxy.reload_command": "reload command (shell); null = render and validate only",
    "haproxy.min_reload_interval": "seconds between reloads; bursts are coalesced",
    "haproxy.validate_timeout": "seconds before a hung validation is killed and counted as a failure (addition)",
    "haproxy.reload_timeout": "seconds before a hung reload command is killed and counted as a failure; retried (addition)",
    "haproxy.retry_interval": "seconds between retries of a failed validation or reload while nothing changes (addition)",
    "haproxy.bind_address": "address of every frontend bind",
    "haproxy.http_port": "vhost frontend `marathon_http_in`",
    "haproxy.https_port": "SNI frontend `marathon_https_in` (only with `ssl_certs`)",
    "haproxy.appid_port": "`X-Marathon-App-Id` frontend `marathon_http_appid_in`",
    "haproxy.stats_port": "stats listener with `monitor-uri /_haproxy_health_check`",
    "haproxy.ssl_certs": "certificate files for the HTTPS frontend",
    "haproxy.maxconn": "global maxconn (addition: fits a stock 20,000-file HAProxy 2.6)",
    "haproxy.hard_stop_after": "how long old workers may drain after a reload (addition)",
    "haproxy.stats_socket": "admin socket, with `expose-fd listeners` for seamless reloads (addition)",
    "haproxy.server_state_file": "keep server health across reloads via this file (addition)",
    "http.listen": "`/metrics`, `/health`, `/ready`, `/v1/...`; null = off",
    "logging.level": "`debug`, `info`, `warning`, `error`",
    "logging.format": "`text` or `json` (one object per line, with a stable `event`)",
}


def _rows(model: BaseModel, prefix: str) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            rows.extend(_rows(value, key + "."))
        else:
            rows.append((key, value))
    return rows


def config_reference() -> str:
    lines = [START, "", "| key | default | meaning |", "| --- | --- | --- |"]
    for key, value in _rows(Settings(), ""):
        default = json.dumps(value)
        lines.append(f"| `{key}` | `{default}` | {HELP.get(key, '')} |")
    lines += ["", END]
    return "\n".join(lines)


def rewrite(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return head + config_reference() + tail


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(rewrite(path.read_text()))
