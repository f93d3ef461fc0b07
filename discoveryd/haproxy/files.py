"""The live haproxy.cfg and its candidates: written next to it, promoted atomically."""

from __future__ import annotations

import os
from pathlib import Path


def candidate_path(config_path: str, tag: str = "candidate") -> str:
    """A sibling of the live file (same file system, so os.replace is atomic)."""
    p = Path(config_path)
    return str(p.with_name(f".{p.name}.{tag}"))


def write_file(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def promote(candidate: str, config_path: str) -> None:
    """Replace the live file with a validated candidate in one rename."""
    os.replace(candidate, config_path)


def read_file(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
