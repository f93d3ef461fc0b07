"""haproxy.cfg text from an HAProxyView, through jinja2 templates compiled once.

The bundled templates (haproxy_templates/) can be overridden file by file from
`templates_dir`. StrictUndefined: a typo in a template fails loudly, not silently.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

import haproxy_templates
from discoveryd.haproxy.view import HAProxyView, HostRule, bind_spec

BUNDLED = Path(haproxy_templates.__file__).parent
MAIN = "haproxy.cfg.j2"


def vhost_cond(host: str) -> str:
    """The Host header (without its port) is `host`; "*.example.com" matches the suffix."""
    if host.startswith("*."):
        return f"{{ req.hdr(host),field(1,:) -m end -i {host[1:]} }}"
    return f"{{ req.hdr(host),field(1,:) -i {host} }}"


def host_cond(rule: HostRule) -> str:
    """The ACL of a vhost rule on the plain HTTP frontend."""
    cond = vhost_cond("*" + rule.host if rule.wildcard else rule.host)
    return cond + (f" {{ path_beg {rule.path} }}" if rule.path else "")


def sni_cond(rule: HostRule) -> str:
    match = "-m end -i" if rule.wildcard else "-i"
    cond = f"{{ ssl_fc_sni {match} {rule.host} }}"
    return cond + (f" {{ path_beg {rule.path} }}" if rule.path else "")


def regex_escape(path: str) -> str:
    return re.sub(r"([.+])", r"\\\1", path)


class Renderer:
    """Compiled templates; `render(view)` is pure and deterministic."""

    def __init__(self, templates_dir: str | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(BUNDLED))]
        if templates_dir:
            loaders.insert(0, jinja2.FileSystemLoader(templates_dir))
        env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        env.globals.update(bind=bind_spec, host_cond=host_cond, sni_cond=sni_cond,
                           vhost_cond=vhost_cond)
        env.filters["regex_escape"] = regex_escape
        self._template = env.get_template(MAIN)

    def render(self, view: HAProxyView) -> str:
        return self._template.render(view=view)
