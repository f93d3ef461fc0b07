"""HAProxy render speed: view + render + write for 1,000 and 5,000 apps (3 tasks each),
`haproxy -c` on the result, and `discoveryd render --apps-file` end to end.

    python benchmarks/render.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from discoveryd.haproxy.files import write_file
from discoveryd.haproxy.render import Renderer
from discoveryd.haproxy.view import build_view
from discoveryd.settings import HAProxySettings
from discoveryd.sources.marathon_apps import parse_apps


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
    tmp = Path(tempfile.mkdtemp(prefix="discoveryd-bench-"))
    settings = HAProxySettings(stats_socket=str(tmp / "admin.sock"))
    renderer = Renderer()
    for n in (1000, 5000):
        snap = parse_apps(apps_json(n))
        out = str(tmp / f"haproxy-{n}.cfg")

        def cycle(snap=snap, out=out) -> None:
            view, _ = build_view(snap, settings)
            write_file(out, renderer.render(view))

        view_s = best_of(lambda snap=snap: build_view(snap, settings))
        total = best_of(cycle)
        print(f"{n:5d} apps: view {view_s * 1000:7.1f} ms   view+render+write "
              f"{total * 1000:7.1f} ms   ({Path(out).stat().st_size // 1024} KiB)")
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
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
