"""`discoveryd render`: fetch (or read) Marathon apps once, print haproxy.cfg, exit."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from pydantic import ValidationError

from discoveryd.haproxy.files import write_file
from discoveryd.haproxy.render import Renderer
from discoveryd.haproxy.view import build_view
from discoveryd.settings import HAProxySettings

APPS_PATH = "/v2/apps?embed=apps.tasks"


class RenderError(Exception):
    """One-line reason for a failed render; `code` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


async def fetch_apps(urls: list[str], timeout: float = 10.0) -> Any:
    """The apps JSON from the first Marathon that answers."""
    import aiohttp  # only here: `render --apps-file` starts faster without it

    errors = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        for url in urls:
            try:
                async with session.get(url.rstrip("/") + APPS_PATH,
                                       headers={"Accept": "application/json"}) as r:
                    r.raise_for_status()
                    return await r.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as e:
                errors.append(f"{url}: {e!r}")
    raise RenderError("no Marathon answered: " + "; ".join(errors), 1)


def read_apps(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise RenderError(f"--apps-file: cannot read {path}: {e.strerror}", 2) from None
    except json.JSONDecodeError as e:
        raise RenderError(f"--apps-file: {path}: invalid JSON: {e.msg} (line {e.lineno})",
                          2) from None


def _settings(group: str | None, templates: str | None,
              base: HAProxySettings | None) -> HAProxySettings:
    values: dict[str, Any] = (base or HAProxySettings()).model_dump()
    if templates is not None:
        values["templates_dir"] = templates
    if group is not None:
        values["group"] = group
    try:
        return HAProxySettings(**values)
    except ValidationError as e:
        err = e.errors()[0]
        flag = {"templates_dir": "templates"}.get(str(err["loc"][0]), err["loc"][0])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise RenderError(f"--{flag}: {msg}", 2) from None


async def render_command(marathon_urls: list[str] | None, apps_file: str | None,
                         group: str | None, output: str | None, templates: str | None,
                         settings: HAProxySettings | None = None) -> int:
    """Exit code: 0 rendered, 1 Marathon unreachable, 2 usage or input error.

    `settings` (the haproxy section of a config file) supplies ports and paths; `group`
    and `templates` override it."""
    from discoveryd.sources.marathon_apps import MarathonFormatError, parse_apps

    try:
        if bool(marathon_urls) == bool(apps_file):
            raise RenderError("render: give exactly one of --marathon or --apps-file", 2)
        settings = _settings(group, templates, settings)
        try:
            renderer = Renderer(settings.templates_dir)
        except Exception as e:  # noqa: BLE001 - jinja2 raises many kinds for a bad template
            raise RenderError(f"--templates: {e}", 2) from None
        raw = read_apps(apps_file) if apps_file else await fetch_apps(marathon_urls or [])
        try:
            snapshot = parse_apps(raw)
        except MarathonFormatError as e:
            raise RenderError(f"apps: {e}", 2) from None
        view, skipped = build_view(snapshot, settings)
        try:
            text = renderer.render(view)
        except Exception as e:  # noqa: BLE001 - an override partial fails only when rendered
            raise RenderError(f"--templates: {type(e).__name__}: {e}", 2) from None
    except RenderError as e:
        print(f"discoveryd: {e}", file=sys.stderr)
        return e.code
    for app_id, index, reason in skipped:
        print(f"discoveryd: skipped {app_id} port {index}: {reason}", file=sys.stderr)
    if output:
        try:
            await asyncio.to_thread(write_file, output, text)
        except OSError as e:
            print(f"discoveryd: --output: cannot write {output}: {e.strerror or e}",
                  file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    return 0
