"""Decode a master's `/master/state` body without stalling the event loop.

`json.loads` is C code that holds the GIL for the whole document: a 10 MB state takes
0.3-2 s on a loaded 2-core machine, and a worker *thread* doing it still stops every DNS
answer for that long. Bodies of `BIG_BODY` bytes or more are therefore decoded in a helper
process (spawned on first need, then kept); only the compact typed result comes back
(unpickling 3,000 tasks costs the loop's process about 50 ms). Smaller bodies are decoded in
a thread: small clusters never start a process. If the helper cannot start or dies, the
body is decoded in a thread instead, so a big state is late at worst, never lost; after
MAX_BREAKS deaths no more helpers are tried. A helper that does not answer within
DECODE_TIMEOUT (stopped, swapped out) counts as dead: it is killed, and the thread decodes.

Strings are read as Go's encoding/json (mesos-dns) reads them: each invalid UTF-8 byte and
each lone surrogate (raw bytes or a `\\uD800` escape) becomes U+FFFD, so one bad byte in a
task name neither refuses the whole state nor changes the task's name hash.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from discoveryd.model.mesos import MesosState, Pid
from discoveryd.sources.mesos_state import StateError, parse_master_state, parse_pid

log = logging.getLogger("discoveryd.mesos")

BIG_BODY = 512 * 1024
MAX_BREAKS = 3
DECODE_TIMEOUT = 30.0  # seconds; a 10 MB state takes 0.3-2 s even on a loaded machine

# Go's utf8.DecodeRune consumes an invalid sequence one byte at a time: one U+FFFD per byte
# (Python's "replace" gives one per maximal invalid subpart).
def _ufffd_per_byte(e: UnicodeError) -> tuple[str, int]:
    assert isinstance(e, UnicodeDecodeError)
    return "\ufffd" * (e.end - e.start), e.end


codecs.register_error("discoveryd.ufffd", _ufffd_per_byte)
# An escape when the backslash is itself unescaped (an odd run of backslashes).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def load_json(body: bytes) -> Any:
    """`json.loads(body)` with Go's string semantics (see the module docstring). Costs what
    json.loads costs (it decodes the bytes the same way) plus a regex scan for surrogate
    escapes; the tree is walked only when one of them is lone. Raises ValueError."""
    if body.startswith(codecs.BOM_UTF8):  # json.loads(bytes) skips one; keep doing so
        body = body[3:]
    text = body.decode("utf-8", "discoveryd.ufffd")  # no surrogates from raw bytes
    raw = json.loads(text)
    if _lone_surrogate_escape(text):
        raw = _replace_surrogates(raw)
    return raw


def _lone_surrogate_escape(text: str) -> bool:
    """Whether some \\uD800-\\uDFFF escape is not half of a high+low pair."""
    if "\\ud" not in text and "\\uD" not in text:  # substring search: ~5 ms for 10 MB
        return False
    low_at = -1  # after a high surrogate: where its low half must start
    for m in _SURROGATE_ESCAPE.finditer(text):
        start = first = m.start()
        while first > 0 and text[first - 1] == "\\":
            first -= 1
        slashes = start + 1 - first
        low = text[start + 3] in "cdefCDEF"
        if low_at >= 0:
            if start == low_at and slashes == 1 and low:
                low_at = -1
                continue
            return True
        if slashes % 2 == 0:
            continue  # escaped backslashes, then a plain "u"
        if low:
            return True
        low_at = m.end()
    return low_at >= 0


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Why a body is unusable; `result` is the fetch metric label (invalid, not_leader).
    A value, not an exception: it crosses the process boundary as plain data."""

    result: str
    reason: str


Decoded = tuple[MesosState, Pid | None]  # the typed state and the answering master's own pid


def decode_state(body: bytes) -> Decoded | Undecodable:
    try:
        raw = load_json(body)
    except ValueError as e:
        return Undecodable("invalid", f"not JSON: {e}")
    if isinstance(raw, dict) and not raw.get("leader"):
        return Undecodable("not_leader", "knows no leader")
    try:
        state = parse_master_state(raw)
    except StateError as e:
        return Undecodable("invalid", str(e))
    try:
        own = parse_pid(raw.get("pid"))
    except ValueError:
        own = None
    return state, own


class StateDecoder:
    """`await decode(body)`: in a thread for small bodies, in the helper process for big ones."""

    def __init__(self, big_body: int = BIG_BODY, timeout: float = DECODE_TIMEOUT) -> None:
        self._big_body = big_body
        self._timeout = timeout
        self._pool: ProcessPoolExecutor | None = None
        self._pool_failed = False  # could not start one, or it kept dying: threads from now on
        self._breaks = 0

    async def decode(self, body: bytes) -> Decoded | Undecodable:
        pool = self._helper() if len(body) >= self._big_body else None
        if pool is not None:
            try:
                # Submitted from a thread: starting the helper (the first time) and queueing
                # the body are work the loop need not wait for either.
                future = await asyncio.to_thread(pool.submit, decode_state, body)
                async with asyncio.timeout(self._timeout):
                    return await asyncio.wrap_future(future)
            except (BrokenProcessPool, OSError, TimeoutError) as e:  # killed (OOM?), hung
                log.warning("state_decoder_failed error=%r; decoding in a thread", e)
                self._discard(kill=True)
                self._breaks += 1
                self._pool_failed = self._breaks >= MAX_BREAKS
        return await asyncio.to_thread(decode_state, body)

    def _helper(self) -> ProcessPoolExecutor | None:
        if self._pool is None and not self._pool_failed:
            try:
                # spawn: a fork would copy kazoo's and the executors' threads mid-flight.
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            except (OSError, ValueError) as e:
                log.warning("state_decoder_unavailable error=%r; decoding in threads", e)
                self._pool_failed = True
        return self._pool

    def _discard(self, kill: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # shutdown() leaves a busy (or stopped) worker running: a hung one is killed.
            workers = list(getattr(pool, "_processes", {}).values()) if kill else []
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in workers:
                with contextlib.suppress(OSError, ValueError):
                    proc.kill()

    def close(self) -> None:
        """Stop the helper process, if any (without waiting for a decode in progress)."""
        self._discard()
