"""HAProxy render speed: view + render + write for 1,000 and 5,000 apps (3 tasks each),
cold (first render) and warm (one app changed), `haproxy -c` on the result,
`discoveryd render --apps-file` end to end, and through the daemon path at 1,000 apps:
SimMarathon event -> MarathonSource -> store -> HAProxyPipeline -> file written (latency),
and how many reloads a burst of 200 events costs.

    python benchmarks/render.py
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from discoveryd.cli import GC_THRESHOLDS
from discoveryd.haproxy.files import write_file
from discoveryd.haproxy.pipeline import HAProxyPipeline
from discoveryd.haproxy.render import Renderer
from discoveryd.haproxy.view import ViewBuilder, build_view
from discoveryd.metrics import Metrics
from discoveryd.model.marathon import MarathonSnapshot
from discoveryd.settings import HAProxySettings, MarathonSettings
from discoveryd.sim import marathon as sim_marathon
from discoveryd.sources.marathon import MarathonSource
from discoveryd.sources.marathon_apps import parse_apps
from discoveryd.store import Store


def apps_json(n: int) -> dict:
    apps = []
    for i in range(n):
        labels = {"HAPROXY_GROUP": "external"}
        if i % 2 == 0:
            labels["HAPROXY_0_VHOST"] = f"app{i}.example.com"
        tasks = [{"id": f"app{i}.{k}", "appId": f"/bench/app{i}", "host": f"10.0.{k}.{i % 250}",
                  "ports": [20000 + i], "state": "TASK_RUNNING", "startedAt": "2024-01-01T00:00:00Z"}
                 for k in range(3)]
        apps.append({"id": f"/bench/app{i}", "instances": 3, "labels": labels,
                     "portDefinitions": [{"port": 10000 + i, "protocol": "tcp"}], "tasks": tasks})
    return {"apps": apps}


def best_of(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    # The daemon's collector settings: with the default ones a full collection of this
    # process's million objects lands at random inside the timed phases.
    gc.set_threshold(*GC_THRESHOLDS)
    tmp = Path(tempfile.mkdtemp(prefix="discoveryd-bench-"))
    settings = HAProxySettings(stats_socket=str(tmp / "admin.sock"))
    renderer, builder = Renderer(), ViewBuilder()
    for n in (1000, 5000):
        snap = parse_apps(apps_json(n))
        out = str(tmp / f"haproxy-{n}.cfg")
        # Each timed run changes another app (one task gone): a new App object for the view
        # memo and a new backend for the block cache, as a Marathon event makes.
        changed = iter([MarathonSnapshot({**snap.apps, a.app_id: a.with_tasks(a.tasks[:2])})
                        for a in snap.ordered[:6]])

        def cycle(snap=snap, out=out, renderer=None) -> None:
            # cold (no renderer given): no app remembered by the view, no cached block
            view, _ = builder.build(snap, settings) if renderer else build_view(snap, settings)
            write_file(out, (renderer or Renderer()).render(view))

        view_s = best_of(lambda snap=snap: build_view(snap, settings))
        view = build_view(snap, settings)[0]
        render_s = best_of(lambda view=view: Renderer().render(view))
        cold = best_of(cycle)
        renderer.render(builder.build(snap, settings)[0])
        view_warm = best_of(lambda changed=changed: builder.build(next(changed), settings))
        warm = best_of(lambda changed=changed, out=out: cycle(next(changed), out, renderer))
        print(f"{n:5d} apps: cold: view {view_s * 1000:6.1f} ms, render {render_s * 1000:6.1f} ms"
              f" (templates compiled), view+render+write {cold * 1000:6.1f} ms   "
              f"({Path(out).stat().st_size // 1024} KiB)")
        print(f"{n:5d} apps: one app changed: view {view_warm * 1000:6.1f} ms, "
              f"view+render+write {warm * 1000:6.1f} ms")
        if shutil.which("haproxy"):
            check = best_of(lambda out=out: subprocess.run(
                ["haproxy", "-c", "-q", "-f", out], check=True, capture_output=True), runs=1)
            print(f"{n:5d} apps: haproxy -c {check * 1000:7.1f} ms")
    apps_file = tmp / "apps-5000.json"
    apps_file.write_text(json.dumps(apps_json(5000)))
    cmd = [sys.executable, "-c", "import asyncio, sys; from discoveryd.haproxy.oneshot import "
           "render_command; sys.exit(asyncio.run(render_command(None, sys.argv[1], None, "
           "sys.argv[2], None)))", str(apps_file), str(tmp / "oneshot.cfg")]
    if shutil.which("discoveryd"):
        probe = subprocess.run(["discoveryd", "render", "--help"], capture_output=True)
        if probe.returncode == 0:
            cmd = ["discoveryd", "render", "--apps-file", str(apps_file), "--output",
                   str(tmp / "oneshot.cfg")]
    e2e = best_of(lambda: subprocess.run(cmd, check=True), runs=3)
    print(f" 5000 apps: render --apps-file end to end {e2e * 1000:7.1f} ms  ({' '.join(cmd[:2])})")
    print("marathon-lb reference: 5,000 apps 7.5 s one-shot, render alone 3.0 s")
    for validate in ("true {path}", "haproxy -c -q -f {path}"):
        if validate.startswith("haproxy") and not shutil.which("haproxy"):
            continue
        asyncio.run(daemon_path(tmp, 1000, validate))
    shutil.rmtree(tmp)


async def wait_file(path: Path, needle: str, timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        with contextlib.suppress(FileNotFoundError):
            if needle in path.read_text():
                return
        await asyncio.sleep(0.001)
    raise TimeoutError(f"{needle!r} never reached {path}")


async def daemon_path(tmp: Path, n: int, validate: str) -> None:
    """Event-to-file latency and reloads per burst through the real daemon components."""
    cfg = tmp / f"daemon-{n}.cfg"
    with contextlib.suppress(FileNotFoundError):
        cfg.unlink()
    async with sim_marathon.SimMarathon(agents=("127.0.0.1",), keepalive_seconds=1.0) as sim:
        for i in range(n):
            sim.add_app(sim_marathon.app(f"/bench/app{i}", instances=1, service_ports=(
                10000 + i,), labels={"HAPROXY_GROUP": "external",
                                     "HAPROXY_0_VHOST": f"app{i}.example.com"}))
        store, metrics = Store(), Metrics()
        source = MarathonSource(MarathonSettings(urls=[sim.url], refresh_seconds=3600), store,
                                metrics)
        pipeline = HAProxyPipeline(HAProxySettings(
            config_path=str(cfg), validate_command=validate, reload_command="true",
            min_reload_interval=0.5, stats_socket=str(tmp / "admin.sock")), store, metrics)
        tasks = [asyncio.create_task(source.run()), asyncio.create_task(pipeline.run())]
        try:
            await wait_file(cfg, f"backend bench_app{n - 1}_")
            while sim.connected_streams == 0:
                await asyncio.sleep(0.01)
            latencies = []
            for k in range(10):
                await asyncio.sleep(0.6)  # past min_reload_interval: measure the path alone
                port = 40000 + k
                t = time.perf_counter()
                sim.start_task(f"/bench/app{k}", ports=[port], host="127.0.0.1")
                await wait_file(cfg, f"127.0.0.1:{port} ")
                latencies.append(time.perf_counter() - t)
            reloads = metrics.registry.get_sample_value(
                "discoveryd_haproxy_reloads_total", {"result": "ok"}) or 0
            await asyncio.sleep(0.6)
            t = time.perf_counter()
            for k in range(200):  # a burst: 200 task launches across 200 apps
                sim.start_task(f"/bench/app{k}", ports=[41000 + k], host="127.0.0.1")
            await wait_file(cfg, "127.0.0.1:41199 ")
            burst = time.perf_counter() - t
            await wait_file(cfg, "127.0.0.1:41000 ")
            after = metrics.registry.get_sample_value(
                "discoveryd_haproxy_reloads_total", {"result": "ok"}) or 0
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    print(f"{n:5d} apps via events, validate '{validate.split()[0]}': event -> file median "
          f"{statistics.median(latencies) * 1000:6.1f} ms (max {max(latencies) * 1000:6.1f}); "
          f"burst of 200 events -> final file {burst * 1000:6.1f} ms, {after - reloads:.0f} reloads")


if __name__ == "__main__":
    main()
