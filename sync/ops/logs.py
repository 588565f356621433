"""Structured logs: every line a flow writes carries the sync record's id; JSON lines on request."""

from __future__ import annotations

import json
import logging
import re
import uuid

from sync.context import current_record_id, current_request_id

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")


class RequestId:
    """Middleware: each request gets an id (the proxy's X-Request-Id when it sends a sane one), carried by
    every log line the request causes (a server error's traceback included) and sent back in the answer."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.headers.get("X-Request-Id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["X-Request-Id"] = request_id
        return response


def install_record_factory() -> None:
    """Tag every log record (whatever handler gets it: console, test capture, Sentry…) with the sync
    record of the flow that wrote it and the web request that caused it."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "zkbridge", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.sync_record = current_record_id.get() or "-"
        record.request_id = current_request_id.get() or "-"
        return record

    factory.zkbridge = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


WEBHOOK_PATH = re.compile(r"(/webhooks/kommo/)[^/\s?\"']+")


def mask_webhook_tokens(text: str) -> str:
    """The Kommo web hook URL's token is its only secret: never in a log line."""
    return WEBHOOK_PATH.sub(r"\1***", text)


class MaskWebhookTokens(logging.Filter):
    """For access logs (runserver's django.server, Django's request warnings): the path carries the token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_webhook_tokens(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


class SyncRecordFilter(logging.Filter):
    """For records made before the factory was installed (early start-up)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "sync_record"):
            record.sync_record = current_record_id.get() or "-"
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "sync_record": getattr(record, "sync_record", "-"),
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)
