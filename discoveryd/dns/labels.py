"""DNS label sanitising, exactly as mesos-dns (records/labels).

RFC 1123 (default): [a-z0-9-], at most 63 bytes, no leading/trailing '-'.
RFC 952 (enforce_rfc952): at most 24 bytes and must not start with a digit.
Upper case is folded, '.', '_' and '-' become '-', everything else is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

LabelFunc = Callable[[str], str]

_MAP = {chr(c): chr(c) for c in range(ord("a"), ord("z") + 1)}
_MAP.update({chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)})
_MAP.update({str(d): str(d) for d in range(10)})
_MAP.update({"-": "-", ".": "-", "_": "-"})


def _mapped(name: str) -> str:
    return "".join(_MAP.get(ch, "") for ch in name)


def _trim_cut(label: str, maxlen: int, left: str, right: str) -> str:
    # Cut at maxlen; if that leaves trailing '-', refill from the rest (as mesos-dns does)
    # so "hello----...-f" keeps the "f".
    trim = label.lstrip(left)
    size = min(len(trim), maxlen)
    head = trim[:size].rstrip(right)
    if len(head) == size:
        return head
    tail = trim[size:].lstrip(right)
    return head + tail[: size - len(head)] if tail else head


@lru_cache(maxsize=65536)
def rfc1123(name: str) -> str:
    return _trim_cut(_mapped(name), 63, "-", "-")


@lru_cache(maxsize=65536)
def rfc952(name: str) -> str:
    return _trim_cut(_mapped(name), 24, "-0123456789", "-")


def label_func(enforce_rfc952: bool) -> LabelFunc:
    return rfc952 if enforce_rfc952 else rfc1123


def domain_frag(name: str, label: LabelFunc) -> str:
    """Sanitise each '.'-separated part; empty parts are dropped ("a..b" -> "a.b")."""
    return ".".join(p for p in map(label, name.split(".")) if p)
