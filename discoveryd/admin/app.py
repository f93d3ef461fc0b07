"""The HTTP API: metrics, health, readiness, and mesos-dns compatible /v1 endpoints.

Handlers read the daemon's published values (settings, record set, component
status); they never trigger fetches, except POST /v1/haproxy/reload.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from discoveryd import URL, __version__
from discoveryd.dns.recordset import RecordSet
from discoveryd.metrics import Metrics
from discoveryd.settings import Settings


class AdminTarget(Protocol):
    """What the daemon exposes to the HTTP API."""

    settings: Settings
    metrics: Metrics
    record_set: RecordSet | None

    def readiness(self) -> dict[str, str]: ...  # token -> why /ready waits; empty = ready
    def pending(self) -> dict[str, str]: ...  # not ready either, but /ready does not wait
    def ready_split(self) -> tuple[dict[str, str], dict[str, str]]: ...  # both at once
    def state_report(self) -> dict[str, Any]: ...
    def haproxy_config(self) -> str | None: ...
    async def haproxy_reload(self) -> dict[str, Any] | None: ...


def _go_int(seconds: float) -> int | float:
    """mesos-dns's Config has int fields: a client decoding into that shape refuses 30.0."""
    return int(seconds) if float(seconds).is_integer() else seconds


def mesos_dns_config(settings: Settings) -> dict[str, Any]:
    """The mesos-dns /v1/config keys, so scripts written for mesos-dns keep working."""
    s = settings.redacted()
    dns, mesos = s["dns"], s["mesos"]
    listen = dns["listen"][0] if dns["listen"] else "0.0.0.0:53"
    host, _, port = listen.rpartition(":")
    http_port = int(s["http"]["listen"].rpartition(":")[2]) if s["http"]["listen"] else 0
    return {
        "Masters": mesos["masters"] or None,
        "Zk": mesos["zk"] or "",
        "ZkDetectionTimeout": _go_int(mesos["zk_detection_timeout"]),
        "RefreshSeconds": _go_int(mesos["refresh_seconds"]),
        "StateTimeoutSeconds": _go_int(mesos["state_timeout"]),
        "IPSources": mesos["ip_sources"],
        "EnforceRFC952": mesos["enforce_rfc952"],
        "TTL": dns["ttl"],
        "Port": int(port),
        "Domain": dns["domain"],
        "Resolvers": dns["resolvers"],
        "ZoneResolvers": dns["zone_resolvers"],
        "Timeout": _go_int(dns["timeout"]),
        "Listener": host.strip("[]"),
        "HttpPort": http_port,
        "DnsOn": dns["enabled"],
        "HttpOn": s["http"]["listen"] is not None,
        "ExternalOn": dns["external"],
        "SOAMname": dns["soa"]["mname"] + ".",
        "SOARname": dns["soa"]["rname"] + ".",
        "SOARefresh": dns["soa"]["refresh"],
        "SOARetry": dns["soa"]["retry"],
        "SOAExpire": dns["soa"]["expire"],
        "SOAMinttl": dns["soa"]["minttl"],
    }


def _fqdn(name: str) -> str:
    name = name.replace(".*", "").lower()  # mesos-dns strips wildcards the same way
    return name if name.endswith(".") else name + "."


def build_app(target: AdminTarget) -> web.Application:
    app = web.Application()

    async def metrics(_: web.Request) -> web.Response:
        target.metrics.ready.set(0 if target.readiness() else 1)
        body = generate_latest(target.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(_: web.Request) -> web.Response:
        waiting, pending = target.ready_split()
        target.metrics.ready.set(0 if waiting else 1)
        body = {"ready": not waiting, "waiting_for": list(waiting), "pending": list(pending),
                "detail": {**waiting, **pending}}
        return web.json_response(body, status=503 if waiting else 200)

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"Service": "discoveryd", "Version": __version__, "URL": URL})

    async def config(_: web.Request) -> web.Response:
        doc = mesos_dns_config(target.settings)
        doc.update(target.settings.redacted())
        return web.json_response(doc)

    async def hosts(request: web.Request) -> web.Response:
        name = _fqdn(request.match_info["host"])
        rs = target.record_set or RecordSet()
        ips = list(rs.a.get(name, ())) + list(rs.aaaa.get(name, ()))
        body = [{"host": name, "ip": ip} for ip in ips] or [{"host": "", "ip": ""}]
        return web.json_response(body)

    async def host_ports(_: web.Request) -> web.Response:
        # mesos-dns routes it and answers 501: a script probing it gets the same answer.
        return web.Response(status=501, text="To be implemented...")

    async def services(request: web.Request) -> web.Response:
        service = request.match_info["service"]
        name = _fqdn(service)
        rs = target.record_set or RecordSet()
        body = []
        for srv in rs.srv.get(name, ()):
            ips = rs.a.get(srv.target) or rs.aaaa.get(srv.target) or ("",)
            body.append({"service": service, "host": srv.target, "ip": ips[0],
                         "port": str(srv.port)})
        return web.json_response(body or [{"service": "", "host": "", "ip": "", "port": ""}])

    async def haproxy_config(_: web.Request) -> web.Response:
        text = target.haproxy_config()
        if text is None:
            return web.Response(status=404, text="no haproxy.cfg installed yet\n")
        return web.Response(text=text, content_type="text/plain")

    async def haproxy_reload(_: web.Request) -> web.Response:
        result = await target.haproxy_reload()
        if result is None:
            return web.json_response({"ok": False, "error": "the HAProxy half is disabled"},
                                     status=409)
        if result.get("ok", True):
            return web.json_response(result)
        # nothing to render yet is a wait, not a failure of this request
        return web.json_response(result, status=503 if result.get("waiting") else 500)

    async def state(_: web.Request) -> web.Response:
        report = target.state_report()
        report["now"] = time.time()
        return web.json_response(report)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/v1/version", version)
    app.router.add_get("/v1/config", config)
    app.router.add_get("/v1/hosts/{host}", hosts)
    app.router.add_get("/v1/hosts/{host}/ports", host_ports)
    app.router.add_get("/v1/services/{service}", services)
    app.router.add_get("/v1/haproxy/config", haproxy_config)
    app.router.add_post("/v1/haproxy/reload", haproxy_reload)
    app.router.add_get("/v1/state", state)
    return app
