from pathlib import Path

from discoveryd.reference import HELP, _rows, config_reference
from discoveryd.settings import Settings


def test_readme_reference_matches_schema():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert config_reference() in readme, "run: python -m discoveryd.reference README.md"


def test_every_key_documented():
    missing = [k for k, _ in _rows(Settings(), "") if k not in HELP]
    assert missing == []
