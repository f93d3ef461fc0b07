"""The render speed-ups change no output: the per-app view memo, the cached blocks and the
inlined `_app.j2` give the text a cold, include-per-backend render gives."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import haproxy_templates
from discoveryd.haproxy.render import Renderer
from discoveryd.haproxy.view import ViewBuilder, build_view
from discoveryd.model.marathon import MarathonSnapshot
from discoveryd.settings import HAProxySettings
from tests.fakes.haproxy import app, snapshot, task

S = HAProxySettings(group="external")
BUNDLED_APP = (Path(haproxy_templates.__file__).parent / "_app.j2").read_text()


def served(app_id: str, port: int, labels: dict[str, str] | None = None, tasks: int = 2):
    return app(app_id, (port,), labels={"HAPROXY_GROUP": "external", **(labels or {})},
               tasks=tuple(task(app_id, 31000 + port % 1000 + k, n=k) for k in range(tasks)))


def test_memo_is_keyed_by_the_settings_it_reads() -> None:
    """The same App objects under another group or bind address are not served stale."""
    snap = snapshot(served("/a", 10001), served("/b", 10002, {"HAPROXY_GROUP": "internal"}))
    builder = ViewBuilder()
    builder.build(snap, S)
    for other in (HAProxySettings(group="internal"), HAProxySettings(group="*"),
                  HAProxySettings(group="external", bind_address="127.0.0.1")):
        warm = builder.build(snap, other)
        assert warm == build_view(snap, other)
        builder.build(snap, S)  # memo refilled under S before the next setting


def test_one_changed_app_is_seen_and_the_others_kept() -> None:
    apps = [served(f"/a{i}", 10000 + i, {"HAPROXY_0_VHOST": f"a{i}.test"}) for i in range(30)]
    base = MarathonSnapshot({a.app_id: a for a in apps})
    builder = ViewBuilder()
    builder.build(base, S)
    changed = MarathonSnapshot({**base.apps, "/a7": apps[7].with_tasks(apps[7].tasks[:1])})
    warm = builder.build(changed, S)
    assert warm == build_view(changed, S)
    assert len(next(b for b in warm[0].backends if b.app_id == "/a7").servers) == 1


def test_memo_stays_bounded_across_full_fetches() -> None:
    """Every full Marathon fetch makes every App object new: the memo keeps the entries of
    the latest view, and older ones only while they are few, so it never grows with time."""
    builder, sizes = ViewBuilder(), []
    for _ in range(40):  # 40 fetches of 100 apps: 4,000 App objects in all
        snap = snapshot(*(served(f"/a{i}", 10000 + i) for i in range(100)))
        builder.build(snap, S)
        sizes.append(len(builder._memo))
    assert max(sizes) <= 100 + 1000 + 100  # the latest view's, plus the grace of 1000
    assert sizes[-1] < 40 * 100  # dropped, not accumulated: would be 4,000 without the bound


# An app: (vhost label or None, bad label?, task count, port); snapshots drawn as a sequence.
APP = st.tuples(st.sampled_from([None, "x.test", "y.test"]), st.booleans(),
                st.integers(0, 3), st.sampled_from([10001, 10002, 10003]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["/p", "/q", "/r"]), APP), min_size=1,
                max_size=6), st.booleans())
def test_warm_views_and_renders_equal_cold_ones(steps, reuse: bool) -> None:
    """Apps kept (same object), replaced, added or removed between snapshots: each warm
    view equals the cold one, and a long-lived Renderer renders what a fresh one does."""
    renderer, builder, objects = Renderer(), ViewBuilder(), {}
    for step in steps:
        apps = {}
        for app_id, spec in step.items():
            if not (reuse and objects.get(app_id, (None,))[0] == spec):
                vhost, bad, n, port = spec
                labels = {"HAPROXY_0_VHOST": vhost} if vhost else {}
                if bad:
                    labels["HAPROXY_0_MODE"] = "udp"
                objects[app_id] = (spec, served(app_id, port, labels, tasks=n))
            apps[app_id] = objects[app_id][1]
        snap = MarathonSnapshot(apps)
        warm = builder.build(snap, S)
        text = renderer.render(warm[0])
        assert warm == build_view(snap, S)
        assert text == Renderer().render(warm[0])


def _several() -> MarathonSnapshot:
    return snapshot(served("/web", 10001, {"HAPROXY_0_VHOST": "web.test",
                                           "HAPROXY_0_STICKY": "true"}),
                    served("/tcp", 10002), served("/v6", 10003, {"HAPROXY_0_MODE": "http"}))


def test_inlined_app_partial_renders_what_the_include_does(tmp_path: Path) -> None:
    """A `{% block %}` keeps the include per backend (it only works in a template of its
    own): wrapping the bundled partial in one must not change a byte."""
    (tmp_path / "_app.j2").write_text("{% block app %}" + BUNDLED_APP + "{% endblock %}")
    view = build_view(_several(), S)[0]
    assert Renderer(str(tmp_path)).render(view) == Renderer().render(view)


def test_app_partial_override_takes_effect(tmp_path: Path) -> None:
    (tmp_path / "_app.j2").write_text(BUNDLED_APP.replace(
        "  use_backend {{ b.name }}\n", "  use_backend {{ b.name }}\n  # custom {{ b.name }}\n"))
    text = Renderer(str(tmp_path)).render(build_view(_several(), S)[0])
    assert "  # custom web_10001\n" in text and "  # custom tcp_10002\n" in text


def test_broken_app_partial_fails_at_render_as_before(tmp_path: Path) -> None:
    (tmp_path / "_app.j2").write_text("{% if b.name %}\nfrontend x\n")
    renderer = Renderer(str(tmp_path))  # the daemon starts; the render reports the error
    with pytest.raises(jinja2.TemplateSyntaxError):
        renderer.render(build_view(_several(), S)[0])
