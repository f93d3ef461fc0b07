"""The one retry schedule both sources use after consecutive failures."""

from __future__ import annotations

import random


def backoff(failures: int, base: float, cap: float) -> float:
    """Jittered exponential back-off: base, 2*base, 4*base, ... up to `cap`, each scaled by
    a random 0.5-1.0 so that many daemons (one per agent) do not retry a recovering master
    or Marathon in lock-step."""
    delay = min(cap, base * 2 ** min(failures - 1, 30))
    return delay * random.uniform(0.5, 1.0)
