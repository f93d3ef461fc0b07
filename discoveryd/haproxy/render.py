"""haproxy.cfg text from an HAProxyView, through jinja2 templates compiled once.

The bundled templates (haproxy_templates/) can be overridden file by file from
`templates_dir`. StrictUndefined: a typo in a template fails loudly, not silently.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
from jinja2 import nodes

import haproxy_templates
from discoveryd.haproxy.view import Backend, HAProxyView, HostRule, bind_spec

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


def location_hosts(vhosts: tuple[str, ...]) -> str:
    """The app's own hosts as a regex alternation, for rewriting only the Location headers
    that point back at the app (as marathon-lb): a redirect to another site stays intact."""
    return "|".join(("[^/:]*" + regex_escape(h[1:])) if h.startswith("*.") else regex_escape(h)
                    for h in vhosts)


# Ends each backend's block in one batch render; no label or name can contain it.
SEPARATOR = "\x00"
APP = "_app.j2"
BLOCKS = '{% for b in backends %}{% include "_app.j2" %}' + SEPARATOR + '{% endfor %}'


def blocks_template(env: jinja2.Environment) -> jinja2.Template:
    """Every backend's `_app.j2` block in one loop, the partial's source inlined in it.

    `{% include %}` per backend costs a template lookup and a copied context each time:
    half of a cold render of 5,000 apps. Inlined, the loop body is the partial's own code
    and renders the same text. The loop head sits on the partial's first line, so a
    template error names `_app.j2` at its own line. A partial that only works on its own
    (`extends`, `block`) or does not compile keeps the include: its error surfaces at
    render time, as before.
    """
    try:
        source, filename, _ = env.loader.get_source(env, APP)  # type: ignore[union-attr]
        tree = env.parse("{% for b in backends %}" + source + SEPARATOR + "{% endfor %}",
                         APP, filename)
        if not any(tree.find_all((nodes.Extends, nodes.Block))):
            code = env.compile(tree, APP, filename)
            return env.template_class.from_code(env, code, env.make_globals(None))
    except jinja2.TemplateError:
        pass
    return env.from_string(BLOCKS)


class Renderer:
    """Compiled templates; `render(view)` is pure and deterministic.

    Each backend's block (`_app.j2`) is rendered once and kept, keyed by the Backend value
    itself (frozen, so equal content means equal text): after an event touching one app
    only that app's blocks are rendered again. Blocks reach the main template as
    `app_blocks`, already in view order.
    """

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
        env.globals["location_hosts"] = location_hosts
        self._template = env.get_template(MAIN)
        self._blocks_template = blocks_template(env)
        self._blocks: dict[Backend, str] = {}

    def render(self, view: HAProxyView) -> str:
        return self._template.render(view=view, app_blocks="".join(self._app_blocks(view)))

    def _app_blocks(self, view: HAProxyView) -> list[str]:
        cache = self._blocks
        # One lookup per backend: hashing a Backend walks its labels and every server.
        found = [cache.get(b) for b in view.backends]
        missing = [b for b, text in zip(view.backends, found, strict=True) if text is None]
        texts: list[str] = []
        if missing:
            texts = self._blocks_template.render(view=view, backends=missing).split(SEPARATOR)
            cache.update(zip(missing, texts, strict=False))
        fresh = iter(texts)  # in view order, as `missing` is
        blocks = [next(fresh) if t is None else t for t in found]
        if len(cache) > 2 * len(view.backends) + 1000:  # forget apps long gone
            self._blocks = {b: cache[b] for b in view.backends}
        return blocks
