"""Broken `/v2/apps` answers a simulated Marathon can serve, for fault-injection tests.

Each mode is something a client really meets in front of a Marathon: a proxy's HTML
error page, a connection cut mid-body, a server error, or JSON of another shape
(an API change, a wrong endpoint). `body` is the correct answer, from which some
modes are derived so they stay realistic.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

GARBAGE_MODES = ("invalid_json", "html", "truncated", "empty", "http_500", "apps_not_list",
                 "not_object", "apps_without_id", "apps_not_objects")

_HTML = (b"<html><head><title>502 Bad Gateway</title></head><body>"
         b"<h1>502 Bad Gateway</h1><hr><center>nginx</center></body></html>\n")


def garbage_response(mode: str, apps: list[dict[str, Any]]) -> web.Response:
    """The broken answer named `mode`, made from the real `apps` list."""
    if mode not in GARBAGE_MODES:
        raise ValueError(f"unknown garbage mode {mode!r}; one of {GARBAGE_MODES}")
    body = json.dumps({"apps": apps}).encode()
    if mode == "invalid_json":
        return _json(body[:-2] + b",,]}")
    if mode == "html":
        return web.Response(body=_HTML, content_type="text/html")
    if mode == "truncated":  # Content-Length matches: the client sees a complete answer
        return _json(body[: max(1, len(body) // 2)])
    if mode == "empty":
        return _json(b"")
    if mode == "http_500":
        return web.json_response({"message": "An unexpected server error occurred."},
                                 status=500)
    if mode == "apps_not_list":
        return web.json_response({"apps": "x"})
    if mode == "not_object":
        return web.json_response(apps)
    if mode == "apps_without_id":
        return web.json_response({"apps": [{k: v for k, v in a.items() if k != "id"}
                                           for a in apps]})
    return web.json_response({"apps": ["x" for _ in apps] or ["x"]})  # apps_not_objects


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")
