"""The recorded payloads under tests/fixtures/, in one place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"


def load_json(name: str) -> Any:
    """The parsed JSON of tests/fixtures/NAME (e.g. "marathon/apps-marathon15.json")."""
    return json.loads((FIXTURES / name).read_text())
