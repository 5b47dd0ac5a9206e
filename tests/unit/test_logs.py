from __future__ import annotations

import json
import logging
import sys

from crmsync.common.logs import JsonFormatter, TextFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "crmsync.test", logging.WARNING, __file__, 1, "hello %s", ("x",), None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_line_carries_context_fields() -> None:
    line = JsonFormatter("ingest").format(_record(event_id="evt_1", tenant="acme"))
    doc = json.loads(line)
    assert "\n" not in line
    assert doc["msg"] == "hello x"
    assert doc["level"] == "warning"
    assert doc["service"] == "ingest"
    assert (doc["event_id"], doc["tenant"]) == ("evt_1", "acme")


def test_json_line_keeps_exceptions_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = JsonFormatter("admin").format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_text_line_shows_context_fields() -> None:
    line = TextFormatter("ingest").format(_record(tenant="acme"))
    assert line.endswith("hello x tenant=acme")
