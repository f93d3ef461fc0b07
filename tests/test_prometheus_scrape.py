"""/metrics as Prometheus sees it: the text parses, carries the contract's metric names, and a
real Prometheus server scrapes it."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_harness import eventually
from tests.fakes.ports import free_port
from tests.test_metrics import CONTRACT

PROMETHEUS = shutil.which("prometheus")


async def test_metrics_text_parses_with_contract_names(ready_daemon):
    await ready_daemon.query("liquor-store.marathon.mesos")  # so the query counter has a sample
    status, text = await ready_daemon.get("/metrics")
    assert status == 200
    families = list(text_string_to_metric_families(text))
    names = set()
    for family in families:
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
    missing = set(CONTRACT) - names
    assert not missing, f"missing from /metrics: {sorted(missing)}"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families for s in f.samples}
    assert samples[("discoveryd_dns_queries_total", (("qtype", "A"), ("rcode", "NOERROR")))] >= 1
    assert samples[("discoveryd_dns_records", (("type", "A"),))] > 0
    assert samples[("discoveryd_mesos_state_fetches_total", (("result", "ok"),))] >= 1


async def query(session: aiohttp.ClientSession, base: str, expr: str) -> list[dict]:
    try:
        async with session.get(f"{base}/api/v1/query", params={"query": expr}) as resp:
            if resp.status != 200:
                return []
            body = await resp.json()
    except aiohttp.ClientError:
        return []
    return body["data"]["result"] if body.get("status") == "success" else []


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_real_prometheus_scrapes_discoveryd(ready_daemon, tmp_path: Path):
    if PROMETHEUS is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is required in CI (.ci/run installs Debian's prometheus)")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    target = ready_daemon.http.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: discoveryd\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['{target}']\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("w")
    proc = await asyncio.create_subprocess_exec(
        PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        stdout=log, stderr=log)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            up = await eventually(lambda: query(session, base, 'up{job="discoveryd"}'),
                                  timeout=120, interval=0.5,
                                  what=f"a scrape ({tmp_path}/prometheus.log)")
            assert up[0]["value"][1] == "1"
            assert up[0]["metric"]["instance"] == target
            records = await eventually(
                lambda: query(session, base, 'discoveryd_dns_records{type="A"}'),
                timeout=60, interval=0.5, what="discoveryd_dns_records in Prometheus")
            assert float(records[0]["value"][1]) > 0
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 60)
        log.close()
