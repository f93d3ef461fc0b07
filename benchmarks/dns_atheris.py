"""Coverage-guided fuzzing of the DNS query function with atheris (libFuzzer for Python).

    python benchmarks/dns_atheris.py -runs=200000 -max_len=4096 [CORPUS_DIR]

Every input goes through `Zone.answer` over UDP and TCP, on a zone that answers for
the domain and one that forwards the rest, and must keep the contract in
tests/dns_contract.py; a broken contract or an exception stops the run with the input
saved as crash-*. Only discoveryd.dns and dnslib are instrumented. atheris is a test
dependency on x86_64 Linux; tests/test_dns_atheris.py runs a bounded 20,000 inputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["discoveryd.dns", "dnslib"]):
    import dnslib  # noqa: F401  (instrumented: the slow path parses with it)

    from discoveryd.dns.resolver import build_zone

from discoveryd.settings import DnsSettings  # noqa: E402
from tests.dns_contract import check_against_query, check_contract  # noqa: E402
from tests.fakes.dns_packets import Packets  # noqa: E402
from tests.test_dns_server import record_set  # noqa: E402

ZONES = [build_zone(record_set(), DnsSettings(external=external), 1)[0]
         for external in (False, True)]
SEEDS = 200  # packets of the hand-made generator given as a starting corpus


def test_one_input(data: bytes) -> None:
    for tcp in (False, True):
        check_against_query(data, check_contract(ZONES[0], data, tcp), tcp)
        check_contract(ZONES[1], data, tcp)


def seed_corpus(directory: Path) -> None:
    """Start from hostile packets that already reach deep paths (EDNS, loops, opcodes)."""
    directory.mkdir(parents=True, exist_ok=True)
    packets = Packets(0, [("web.marathon.mesos.", 1), ("_big._tcp.marathon.mesos.", 33),
                          ("nope.marathon.mesos.", 1), ("example.com.", 1)])
    for i in range(SEEDS):
        (directory / f"seed-{i:03d}").write_bytes(packets.next())


def main() -> None:
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    for directory in corpus:
        seed_corpus(Path(directory))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
