"""Structured logs: every line a flow writes carries the sync record's id; JSON lines on request."""

from __future__ import annotations

import json
import logging

from sync.context import current_record_id


def install_record_factory() -> None:
    """Tag every log record (whatever handler gets it: console, test capture, Sentry…) with the sync
    record of the flow that wrote it."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "zkbridge", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.sync_record = current_record_id.get() or "-"
        return record

    factory.zkbridge = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class SyncRecordFilter(logging.Filter):
    """For records made before the factory was installed (early start-up)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "sync_record"):
            record.sync_record = current_record_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "sync_record": getattr(record, "sync_record", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)
