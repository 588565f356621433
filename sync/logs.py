"""Structured logs: every line a flow writes carries the sync record's id; JSON lines on request."""

from __future__ import annotations

import json
import logging

from sync.context import current_record_id


class SyncRecordFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
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
