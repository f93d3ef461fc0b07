"""Logging set-up: text for people, JSON lines for machines; secrets redacted.

Every message starts with a stable event name (`leader_changed`, `reload_failed`...);
the JSON format lifts it into its own `event` field.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_SECRET_RES = (
    re.compile(r"(://)[^/@\s]+@"),  # user:pass@ in zk:// and http:// URLs
    re.compile(r"(?i)(authorization:\s*basic\s+)\S+"),
)


def redact(text: str) -> str:
    text = _SECRET_RES[0].sub(r"\1REDACTED@", text)
    return _SECRET_RES[1].sub(r"\1REDACTED", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        return True


_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        event, _, rest = msg.partition(" ")
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event if re.fullmatch(r"[a-z][a-z0-9_]*", event) else "message",
            "msg": msg,
        }
        for key, value in vars(record).items():  # fields passed with extra={...}
            if key not in _STANDARD_ATTRS and key not in doc:
                doc[key] = value if isinstance(value, int | float | bool | None) else redact(
                    str(value))
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(doc, separators=(",", ":"))


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("kazoo").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
