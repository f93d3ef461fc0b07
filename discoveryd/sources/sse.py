"""A sans-IO Server-Sent Events parser (the WHATWG event-stream format).

Bytes go in as they arrive, in chunks split anywhere (inside a UTF-8 character,
between CR and LF); complete events come out. No sockets here, so the protocol is
tested by feeding bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str  # "message" when the stream named none
    data: str
    id: str | None = None


class SseParser:
    def __init__(self) -> None:
        self._buf = b""
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
        buf = self._buf + chunk
        if not self._started:
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                self._buf = buf
                return []
            self._started = True
            buf = buf.removeprefix(_BOM)
        events: list[SseEvent] = []
        pos = 0
        for m in _EOL.finditer(buf):
            event = self._line(buf[pos:m.start()].decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
            pos = m.end()
        if pos and buf[pos - 1:pos] == b"\r" and pos == len(buf):
            self._skip_lf = True
        self._buf = buf[pos:]
        return events

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
        self._data, self._event = [], ""
        if not data:
            return None
        return SseEvent(event=event or "message", data="\n".join(data), id=self.last_event_id)
