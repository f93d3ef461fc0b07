"""A sans-IO Server-Sent Events parser (the WHATWG event-stream format).

Bytes go in as they arrive, in chunks split anywhere (inside a UTF-8 character,
between CR and LF); complete events come out. No sockets here, so the protocol is
tested by feeding bytes. Each chunk is scanned once, so a multi-megabyte event (Marathon's
deployment events carry whole group trees) costs linear time however it is split, and
an event larger than `max_event_bytes` is an error rather than unbounded memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
MAX_EVENT_BYTES = 256 * 2**20


class SseError(ValueError):
    """The stream broke a limit; the connection should be dropped."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str  # "message" when the stream named none
    data: str
    id: str | None = None


class SseParser:
    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._pending: list[bytes] = []  # the unfinished line, chunk by chunk
        self._pending_size = 0
        self._data_size = 0  # bytes of `data` lines in the event being built
        self._skip_lf = False  # the last chunk ended in CR: a leading LF belongs to it
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None  # the server's `retry:` advice, if any
        self.comments = 0  # `:` lines seen (Marathon's keep-alives)

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Consume bytes; return the events they completed, in order."""
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if not self._started:
            chunk = self._take_pending() + chunk
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._keep(chunk)
                return []
            self._started = True
            chunk = chunk.removeprefix(_BOM)
        events: list[SseEvent] = []
        pos = 0
        for m in _EOL.finditer(chunk):  # only the new bytes: earlier ones held no line end
            line = chunk[pos:m.start()]
            if self._pending:
                line = self._take_pending() + line
            event = self._line(line.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
            pos = m.end()
        if pos and pos == len(chunk) and chunk[pos - 1:pos] == b"\r":
            self._skip_lf = True
        self._keep(chunk[pos:])
        return events

    def _keep(self, part: bytes) -> None:
        if part:
            self._pending.append(part)
            self._pending_size += len(part)
            if self._pending_size > self.max_event_bytes:
                raise SseError(f"a line of more than {self.max_event_bytes} bytes")

    def _take_pending(self) -> bytes:
        joined = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        return joined

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data_size += len(value)
            if self._data_size > self.max_event_bytes:
                raise SseError(f"an event with more than {self.max_event_bytes} characters of data")
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        data, event = self._data, self._event
        self._data, self._event, self._data_size = [], "", 0
        if not data:
            return None
        return SseEvent(event=event or "message", data="\n".join(data), id=self.last_event_id)
