"""Read one sample from a running daemon's /metrics, as a Prometheus scraper would."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


async def sample(r: Any, name: str, **labels: str) -> float:
    """The value of `name{labels}` on `r.get("/metrics")` (0 when absent: a labelled
    counter is exported only once it has been touched)."""
    status, text = await r.get("/metrics")
    assert status == 200, (status, text)  # a broken /metrics must not read as 0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0
