"""Coverage-guided fuzzing (atheris, i.e. libFuzzer) of the DNS query function, bounded for CI.

The hypothesis tests in test_dns_fuzz.py generate packets from a model of what is nasty;
libFuzzer instead mutates towards inputs that reach new branches of discoveryd.dns and
dnslib. Both check the same contract (tests/dns_contract.py). Longer runs:
`python benchmarks/dns_atheris.py -runs=400000 CORPUS_DIR`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "benchmarks" / "dns_atheris.py"
RUNS = 20_000  # about 15 s on one core


@pytest.mark.long
@pytest.mark.timeout(600)
def test_libfuzzer_finds_no_input_breaking_the_contract(tmp_path: Path) -> None:
    pytest.importorskip("atheris")  # a test dependency on x86_64 Linux, where CI runs
    proc = subprocess.run(
        [sys.executable, str(HARNESS), f"-runs={RUNS}", "-max_len=4096", "-seed=8",
         str(tmp_path / "corpus")],
        cwd=tmp_path, capture_output=True, text=True, timeout=540)
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert proc.returncode == 0 and not crashes, (crashes, proc.stderr[-4000:])
    assert f"Done {RUNS} runs" in proc.stderr, proc.stderr[-2000:]
    assert len(list((tmp_path / "corpus").iterdir())) > 200  # it found inputs beyond the seeds
