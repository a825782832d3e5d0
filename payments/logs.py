"""Logging as one JSON object per line, carrying whatever ids a record was given and those of
the request it was written in (request id, agency, payment); never card data or secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

# Functions that name the ids of whatever is being done now (the HTTP side adds the request's).
ContextSource = Callable[[], Mapping[str, Any]]
_sources: list[ContextSource] = []


def add_context(source: ContextSource) -> None:
    """Have every line carry what `source` answers when it is written (added once)."""
    if source not in _sources:
        _sources.append(source)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for source in _sources:
            entry.update(source())
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str) -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
