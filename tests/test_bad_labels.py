"""Hostile HAProxy labels and app ids: the app (port) is skipped and named, never rendered.

Injection attempts (newline, CR, `#`, NUL, quotes, jinja syntax, log-format `%`), unicode
(non-ASCII names, RTL and zero-width marks, emoji, case-folding look-alikes) and 10 KB
values go through the real `build_view` + `Renderer` and the real `haproxy -c`; the
pipeline and a running daemon in front of a real HAProxy show the log line and metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import haproxy_templates
from discoveryd.haproxy.pipeline import HAProxyPipeline
from discoveryd.haproxy.render import Renderer
from discoveryd.haproxy.view import build_view
from discoveryd.metrics import Metrics
from discoveryd.model.cluster import ClusterState, with_marathon
from discoveryd.model.marathon import App, MarathonSnapshot
from discoveryd.settings import HAProxySettings
from discoveryd.sim import marathon as sim
from discoveryd.store import Store
from tests.daemon_harness import eventually, settings_for, start_daemon
from tests.fakes.echo import EchoHTTP
from tests.fakes.haproxy import HAPROXY, HAProxyProcess, app, snapshot, task
from tests.fakes.ports import free_port

needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed")
S = HAProxySettings(group="external", bind_address="127.0.0.1",
                    stats_socket="/run/discoveryd-test/admin.sock")
RENDERER = Renderer()
HOSTILE_ID = "/hostile"
GOOD = (
    app("/stable/web", (10002,), labels={"HAPROXY_0_VHOST": "stable.example.com"},
        tasks=(task("/stable/web", 31002),)),
    app("/stable/tcp", (10003,), tasks=(task("/stable/tcp", 31003),)),
)
BASELINE = RENDERER.render(build_view(snapshot(*GOOD), S)[0])

# A value each label accepts (and that takes effect on the hostile app), and the reason a
# malformed one is counted under: the operator-facing acceptance rules, written out here
# rather than read from discoveryd.haproxy.labels.
VALID = {
    "HAPROXY_GROUP": ("external", "bad_group"),
    "HAPROXY_0_GROUP": ("external", "bad_group"),
    "HAPROXY_0_VHOST": ("shop.example.com", "bad_vhost"),
    "HAPROXY_0_PATH": ("/api", "bad_path"),
    "HAPROXY_0_MODE": ("http", "bad_mode"),
    "HAPROXY_0_PORT": ("10100", "bad_int"),
    "HAPROXY_0_BIND_ADDR": ("127.0.0.1", "bad_bind_addr"),
    "HAPROXY_0_BIND_OPTIONS": ("accept-proxy", "bad_bind_options"),
    "HAPROXY_0_BALANCE": ("leastconn", "bad_balance"),
    "HAPROXY_0_BACKEND_WEIGHT": ("5", "bad_int"),
    "HAPROXY_0_SSL_CERT": ("/etc/ssl/shop.pem", "bad_ssl_cert"),
    "HAPROXY_0_AUTH": ("realm:user:$5$crypted", "bad_auth"),
    "HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH": ("/api", "bad_path"),
    "HAPROXY_0_HTTP_BACKEND_REVPROXY_PATH": ("/api", "bad_path"),
    "HAPROXY_0_HTTP_BACKEND_REDIR": ("/home", "bad_path"),
    "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": ("10.0.0.0/8", "bad_network"),
    "HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX": ("0", "bad_int"),
    "HAPROXY_DEPLOYMENT_GROUP": ("hostile", "bad_deployment_group"),
    "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": ("2", "bad_int"),
}
# Labels judged for the whole app (skipped with port index -1).
APP_WIDE = {"HAPROXY_DEPLOYMENT_GROUP", "HAPROXY_DEPLOYMENT_TARGET_INSTANCES"}
# Values that may hold spaces (lists, `url_param x`, a realm, extra bind options).
MULTI_WORD = {"HAPROXY_0_PATH", "HAPROXY_0_BIND_OPTIONS", "HAPROXY_0_BALANCE", "HAPROXY_0_AUTH",
              "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL"}
# Every injection carries "evil": whatever the label, that word must never be rendered.
INJECTIONS = {
    "newline": "\n  server evil 1.2.3.4:80",
    "crlf": "\r\nglobal evil",
    "cr": "\rbackend evil",
    "comment": " # evil",
    "hash": "#evil",
    "nul": "\x00evil",
    "tab": "\tevil",
    "space": " evil",
    "double_quote": '"evil',
    "single_quote": "'evil",
    "backslash": "\\evil",
    "jinja_expression": "{{ evil }}",
    "jinja_statement": "{% raw %}evil",
    "log_format": "%[evil]",
    "non_ascii": "bücher-evil",
    "rtl_mark": "\u202eevil",
    "zero_width": "\u200bevil",
    "emoji": "\U0001f600evil",
    "kelvin_sign": "\u212aevil",  # lower-cases to an ASCII "k"
    "long_s": "\u017fevil",  # matches [a-z] under re.IGNORECASE
    "line_separator": "\u2028evil",  # str.strip/split treat it as whitespace
    "next_line": "\x85evil",
    "ten_kb": "evil" * 2560,
}
# Injections that only work on one label's syntax: an IPv6 scope id is free text to
# Python's ipaddress, and a redirect location or Location rewrite is a log-format string.
LABEL_INJECTIONS = {
    "HAPROXY_0_BIND_ADDR": ["fe80::1%eth0\n  server evil 1.2.3.4:80", "::1%evil#x", "::1%evil"],
    "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": ["fe80::%evil#x/64", "fe80::%evil/64"],
    "HAPROXY_0_HTTP_BACKEND_REDIR": ["/%", "/%Hevil", "/a%2Fevil"],
    "HAPROXY_0_HTTP_BACKEND_REVPROXY_PATH": ["/%cievil", "/%[src]evil"],
    "HAPROXY_0_VHOST": ["evil.test,\u017fhop.example.com", "x" * 64 + ".evil.test",
                        ".".join(["evil"] * 60), ",".join(["evil.test"] * 500)],
    "HAPROXY_0_PATH": ["/" + "evil" * 2560, "-i /evil -i"],
    "HAPROXY_0_AUTH": ["realm:evil", "realm:user:pw:evil\n"],
}
HOSTILE_APP_IDS = [
    "/evil\n  server evil 1.2.3.4:80", "/evil\r\nglobal", "/evil app", "/evil#x", "/evil\x00",
    "/evil'q", '/evil"q', "/evil\\x", "/evil{{x}}", "/evil%[src]", "/évil", "/evil\u200b",
    "/\u202eevil", "/evil\U0001f600", "/" + "evil" * 2560, "/evil:1",
]


def hostile_app(labels: dict[str, str], app_id: str = HOSTILE_ID, port: int = 10001) -> App:
    base = {"HAPROXY_0_VHOST": "hostile.example.com"}
    if "HAPROXY_DEPLOYMENT_TARGET_INSTANCES" in labels:
        base["HAPROXY_DEPLOYMENT_GROUP"] = "hostile"
    return app(app_id, (port,), labels={**base, **labels}, tasks=(task(app_id, 31001),))


def render(*apps: App) -> tuple[str, list[tuple[str, int, str]]]:
    view, skipped = build_view(snapshot(*GOOD, *apps), S)
    return RENDERER.render(view), skipped


def values(label: str) -> list[tuple[str, str]]:
    """(case name, value): each injection appended to a valid value, and put before it."""
    valid = VALID[label][0]
    out = [(f"valid+{name}", valid + inj) for name, inj in INJECTIONS.items()
           if not (name == "space" and label in MULTI_WORD)]
    # Surrounding spaces are trimmed, so " evil" in front just makes another valid word.
    out += [(f"{name}+valid", inj + valid) for name, inj in INJECTIONS.items() if name != "space"]
    return out + [(f"special{i}", v) for i, v in enumerate(LABEL_INJECTIONS.get(label, []))]


def haproxy_check(text: str, path: Path) -> subprocess.CompletedProcess[str]:
    path.write_text(text)
    return subprocess.run([HAPROXY or "haproxy", "-c", "-f", str(path)], capture_output=True,
                          text=True, timeout=60)


# --- the template's own lines: what a rendered line may look like ------------------------

def _template_lines() -> tuple[frozenset[str], frozenset[str]]:
    """First words of the templates' directive lines, and their literal comment lines."""
    words, comments = set(), set()
    for f in Path(haproxy_templates.__file__).parent.glob("*.j2"):
        for line in f.read_text().splitlines():
            s = line.strip()
            if not s or s.startswith(("{%", "{#", "{{")):
                continue
            (comments.add(line) if s.startswith("#") else words.add(s.split()[0]))
    return frozenset(words), frozenset(comments)


DIRECTIVES, COMMENTS = _template_lines()
NAME = r"[A-Za-z0-9_.:-]+"


def assert_template_shaped(text: str) -> None:
    """Every line is printable ASCII, starts with a directive the templates write, has no
    comment the templates do not write, and balanced quotes."""
    for n, line in enumerate(text.split("\n"), 1):
        where = f"line {n}: {line[:120]!r}"
        assert all(" " <= c <= "~" for c in line), where
        if not line.strip():
            continue
        if "#" in line:
            assert line in COMMENTS, where
            continue
        assert line.split()[0] in DIRECTIVES, where
        assert line.count('"') % 2 == 0 and line.count("'") % 2 == 0, where
        if not line.startswith(" "):
            assert re.fullmatch(rf"global|defaults|listen stats|frontend {NAME}|backend {NAME}"
                                rf"|userlist user_{NAME}", line), where


# --- every label, every injection --------------------------------------------------------

def test_template_lines_were_found() -> None:
    assert {"frontend", "backend", "server", "bind", "use_backend", "http-request"} <= DIRECTIVES
    assert_template_shaped(BASELINE)


@pytest.mark.parametrize("label", sorted(VALID))
def test_valid_value_is_rendered(label: str) -> None:
    """The base the injections are added to is accepted: their rejection is not vacuous."""
    text, skipped = render(hostile_app({label: VALID[label][0]}))
    assert skipped == []
    assert "backend hostile_" in text
    assert_template_shaped(text)


@pytest.mark.parametrize("label", sorted(VALID))
def test_injection_skips_the_app_names_it_and_renders_nothing(label: str) -> None:
    reason = VALID[label][1]
    index = -1 if label in APP_WIDE else 0
    for case, value in values(label):
        text, skipped = render(hostile_app({label: value}))
        assert skipped == [(HOSTILE_ID, index, reason)], case
        assert text == BASELINE, case  # the others render exactly as without it
        assert "evil" not in text, case


@pytest.mark.parametrize("app_id", HOSTILE_APP_IDS, ids=range(len(HOSTILE_APP_IDS)))
def test_hostile_app_id_is_skipped_and_named_on_one_bounded_line(app_id: str) -> None:
    text, skipped = render(hostile_app({}, app_id=app_id))
    assert text == BASELINE and "evil" not in text
    [(named, index, reason)] = skipped
    assert (index, reason) == (-1, "bad_app_id")
    # Named recognisably, but as one printable line of bounded length (log and metric).
    assert all(" " <= c <= "~" for c in named) and len(named) < 300
    assert named.startswith(("/evil", "/\\u202eevil", "/\\xe9vil")), named


def test_vhost_rules_an_operator_expects() -> None:
    ok = {"Shop.Example.COM": ("shop.example.com",), "*.example.com": ("*.example.com",),
          "a.test, b.test": ("a.test", "b.test"), "xn--bcher-kva.example": ("xn--bcher-kva.example",),
          ("a" * 63 + ".test"): ("a" * 63 + ".test",),
          "a_b.test": ("a_b.test",)}  # marathon-lb passes "_" through
    for value, hosts in ok.items():
        view, skipped = build_view(snapshot(hostile_app({"HAPROXY_0_VHOST": value})), S)
        assert skipped == [] and view.backends[0].labels.vhosts == hosts, value
    for value in ["bücher.example", "a" * 64 + ".test", ".".join(["a" * 60] * 5),
                  "a..test", "-a.test", "a.test.", "*", "a.*.test", "a b.test"]:
        _, skipped = build_view(snapshot(hostile_app({"HAPROXY_0_VHOST": value})), S)
        assert skipped == [(HOSTILE_ID, 0, "bad_vhost")], value


@needs_haproxy
def test_all_hostile_apps_together_validate_with_haproxy(tmp_path: Path) -> None:
    apps, port = [], 20000
    for label in VALID:
        for _, value in values(label):
            port += 1
            apps.append(hostile_app({label: value}, app_id=f"/h{port}", port=port))
    apps += [hostile_app({}, app_id=a, port=19000 + i) for i, a in enumerate(HOSTILE_APP_IDS)]
    text, skipped = render(*apps)
    assert len(skipped) == len(apps)
    assert text == BASELINE
    result = haproxy_check(text, tmp_path / "haproxy.cfg")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_haproxy
def test_every_valid_value_together_validates_with_haproxy(tmp_path: Path) -> None:
    """The acceptance rules let through only what HAProxy loads (certificates aside: a
    missing file is HAProxy's to find, and bisection leaves such an app out)."""
    labels = {k: v for k, (v, _) in VALID.items() if k not in APP_WIDE | {"HAPROXY_0_SSL_CERT"}}
    text, skipped = render(hostile_app(labels), hostile_app(
        {"HAPROXY_0_MODE": "tcp", "HAPROXY_0_BALANCE": "url_param sid",
         "HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL": "10.0.0.0/8 fd00::/8 192.168.1.7",
         "HAPROXY_0_BIND_ADDR": "::1", "HAPROXY_0_VHOST": ""}, app_id="/tcp", port=10004))
    assert skipped == [] and "backend hostile_10100" in text and "backend tcp_10004" in text
    assert_template_shaped(text)
    result = haproxy_check(text, tmp_path / "haproxy.cfg")
    assert result.returncode == 0, result.stdout + result.stderr


# --- generated label values --------------------------------------------------------------

LABEL_NAMES = sorted(VALID) + ["HAPROXY_0_ENABLED", "HAPROXY_0_STICKY",
                               "HAPROXY_0_REDIRECT_TO_HTTPS", "HAPROXY_0_USE_HSTS",
                               "HAPROXY_DEPLOYMENT_STARTED_AT"]
FRAGMENTS = [v for v, _ in VALID.values()] + list(INJECTIONS.values())[:-1] + [
    ",", " ", ":", "/", ".", "*.", "-i ", "%", "%H", "{", "}", "(", ")", "$", "=", "@", "true",
    "fe80::1%eth0", "::1", "url_param ", "hdr(host)", "rdp-cookie", "tcp", "HTTP", "0", "-1",
    "99999999", "xn--", "\x00", "\n", "\r", "\t", "\x0b", "\x0c", "\x1c", "\u00a0", "é", "ſ",
    "\u212a", "İ", "\ufeff", "\U000e0041",
]
label_value = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)),
                       max_size=5).map("".join)
label_sets = st.dictionaries(st.sampled_from(LABEL_NAMES), label_value, min_size=1, max_size=4)


def _check_invariants(labels: dict[str, str]) -> str:
    view, skipped = build_view(snapshot(*GOOD, hostile_app(labels)), S)
    text = RENDERER.render(view)
    assert_template_shaped(text)
    # The hostile app never changes how the others render...
    others = set(view.app_ids) - {a.app_id for a in GOOD}
    assert RENDERER.render(view.without(others)) == BASELINE
    # ... and is either rendered or named as skipped (a disabled or other-group port is
    # neither: it is not served, by the operator's choice).
    named = {a for a, _, _ in skipped}
    assert others or named or not _served_by_labels(labels), (labels, skipped)
    assert not named & {a.app_id for a in GOOD}
    return text


def _served_by_labels(labels: dict[str, str]) -> bool:
    group = labels.get("HAPROXY_0_GROUP", labels.get("HAPROXY_GROUP", "external"))
    enabled = labels.get("HAPROXY_0_ENABLED", "true").strip().lower() in {"true", "t", "yes", "y"}
    return enabled and "external" in [g.strip() for g in group.split(",")]


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(label_sets)
def test_generated_labels_render_only_template_lines(labels: dict[str, str]) -> None:
    _check_invariants(labels)


PASS_THROUGH = {"HAPROXY_0_BIND_OPTIONS", "HAPROXY_0_SSL_CERT"}  # HAProxy judges them


@needs_haproxy
@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from([n for n in LABEL_NAMES if n not in PASS_THROUGH]),
                       label_value, min_size=1, max_size=6))
def test_generated_labels_validate_with_haproxy(tmp_path: Path, labels: dict[str, str]) -> None:
    text = _check_invariants(labels)
    result = haproxy_check(text, tmp_path / "generated.cfg")
    assert result.returncode == 0, (labels, result.stdout + result.stderr)


# --- the pipeline and a running daemon name the app --------------------------------------

@needs_haproxy
async def test_pipeline_logs_and_counts_the_skipped_app(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, "discoveryd.haproxy")
    store, metrics = Store(ClusterState()), Metrics()
    pipeline = HAProxyPipeline(S.model_copy(update={"config_path": str(tmp_path / "h.cfg")}),
                               store, metrics)
    forged = "/evil\n2024-01-01 ERROR forged log line"

    def publish(*apps: App) -> None:
        store.apply(lambda s: with_marathon(s, snapshot(*GOOD, *apps), time.time()))

    publish(hostile_app({"HAPROXY_0_VHOST": "shop.example.com\n  server evil 1.2.3.4:80"}),
            hostile_app({}, app_id=forged, port=10009))
    assert (await pipeline.reload_now())["ok"]
    assert (tmp_path / "h.cfg").read_text() == BASELINE
    sample = metrics.registry.get_sample_value
    assert sample("discoveryd_haproxy_skipped_apps", {"app_id": HOSTILE_ID}) == 1
    assert sample("discoveryd_haproxy_skipped_total", {"reason": "bad_vhost"}) == 1
    assert sample("discoveryd_haproxy_skipped_total", {"reason": "bad_app_id"}) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert all("\n" not in m and "\r" not in m for m in messages)
    assert any(f"app_id={HOSTILE_ID} " in m and "reason=bad_vhost" in m for m in messages)
    assert any("app_id=/evil\\n2024-01-01" in m and "bad_app_id" in m for m in messages)

    publish(hostile_app({"HAPROXY_0_VHOST": "shop.example.com"}))  # the owner fixes it
    assert (await pipeline.reload_now())["ok"]
    assert "backend hostile_10001" in (tmp_path / "h.cfg").read_text()
    assert sample("discoveryd_haproxy_skipped_apps", {"app_id": HOSTILE_ID}) is None


@contextlib.asynccontextmanager
async def running_haproxy(tmp_path: Path) -> AsyncIterator[HAProxyProcess]:
    """A real HAProxy started from what discoveryd renders for an empty Marathon."""
    hp = HAProxyProcess(tmp_path)
    first = HAProxyPipeline(S.model_copy(update={"config_path": hp.config_path,
                                                 "stats_socket": hp.stats_socket,
                                                 "stats_port": hp.stats_port}),
                            Store(ClusterState(marathon=MarathonSnapshot())), Metrics())
    assert (await first.reload_now())["ok"]
    await hp.start()
    try:
        yield hp
    finally:
        await hp.stop()


async def _served(session: aiohttp.ClientSession, port: int, want: str, **headers: str) -> bool:
    try:
        async with session.get(f"http://127.0.0.1:{port}/", headers=headers) as r:
            return r.status == 200 and await r.text() == want
    except aiohttp.ClientError:
        return False


@needs_haproxy
@pytest.mark.integration
async def test_daemon_leaves_hostile_apps_out_and_keeps_serving(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, "discoveryd.haproxy")
    one, two = await EchoHTTP("one").start(), await EchoHTTP("two").start()
    p_one, p_two, p_vhost, p_bind = (free_port() for _ in range(4))
    async with running_haproxy(tmp_path) as hp, \
            sim.SimMarathon(agents=("127.0.0.1",), keepalive_seconds=0.5) as marathon, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        def add(app_id: str, port: int, backend: int, **labels: str) -> None:
            marathon.add_app(sim.app(app_id, service_ports=(port,),
                                     labels={"HAPROXY_GROUP": "external", **labels}))
            marathon.start_task(app_id, ports=[backend], host="127.0.0.1")

        add("/good/one", p_one, one.port, HAPROXY_0_VHOST="one.test")
        add("/good/two", p_two, two.port)
        add("/evil/vhost", p_vhost, one.port,
            HAPROXY_0_VHOST="evil.test\n  server evil 10.9.9.9:80 backup")
        # Passes the label rules (bind options are HAProxy's to judge); `haproxy -c` fails.
        add("/evil/bind", p_bind, two.port, HAPROXY_0_BIND_OPTIONS="evil-keyword")
        r = await start_daemon(settings_for(
            dns={"enabled": False}, marathon={"urls": [marathon.url]},
            haproxy={"config_path": hp.config_path, "bind_address": "127.0.0.1",
                     "http_port": hp.http_port, "appid_port": hp.appid_port,
                     "stats_port": hp.stats_port, "https_port": free_port(),
                     "stats_socket": hp.stats_socket, "reload_command": hp.reload_command,
                     "min_reload_interval": 0}))
        try:
            await eventually(lambda: _served(session, hp.http_port, "one", Host="one.test"),
                             timeout=60, what="one.test served through HAProxy")
            await eventually(lambda: _served(session, p_two, "two"), timeout=30,
                             what="/good/two served on its service port")
            live = Path(hp.config_path).read_text()
            assert "evil" not in live and live == r.daemon.haproxy_config()
            check = await asyncio.to_thread(haproxy_check, live, tmp_path / "copy.cfg")
            assert check.returncode == 0, check.stderr
            _, metrics = await r.get("/metrics")
            assert 'discoveryd_haproxy_skipped_apps{app_id="/evil/vhost"} 1.0' in metrics
            assert 'discoveryd_haproxy_skipped_total{reason="bad_vhost"} 1.0' in metrics
            # An app left out by bisection is named by the same metric.
            assert 'discoveryd_haproxy_skipped_apps{app_id="/evil/bind"} 1.0' in metrics
            assert 'discoveryd_haproxy_skipped_total{reason="validation_failed"} 1.0' in metrics
            _, state = await r.get("/v1/state")
            assert state["haproxy"]["excluded_apps"] == ["/evil/bind"]
            messages = [rec.getMessage() for rec in caplog.records]
            assert any("app_id=/evil/vhost " in m and "reason=bad_vhost" in m for m in messages)
            assert any("haproxy_apps_excluded app_ids=/evil/bind" in m for m in messages)

            # The owner fixes the label: the app is served and no longer named.
            add("/evil/vhost", p_vhost, one.port, HAPROXY_0_VHOST="fixed.test")
            await eventually(lambda: _served(session, hp.http_port, "one", Host="fixed.test"),
                             timeout=30, what="the fixed app served")
            _, metrics = await r.get("/metrics")
            assert 'app_id="/evil/vhost"' not in metrics
            assert await _served(session, hp.http_port, "one", Host="one.test")
        finally:
            await r.daemon.stop()
            await one.stop()
            await two.stop()
