"""What operators read: CLI columns, log lines on a terminal or not, dead-letter excerpts
and cursors."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from configtable import configure_logging
from webhookd.deadletters import just_below, valid_id
from webhookd.model import DEAD_BODY_MAX_BYTES, DEAD_EXCERPT_BYTES, dead_body_fields
from webhookd.output import columns, fields


def test_columns_align_under_a_header() -> None:
    rows = [{"id": "ep_1", "enabled": True, "reason": None},
            {"id": "ep_22", "enabled": False, "reason": "gone\nfor good"}]  # fmt: skip
    assert columns(rows, ("id", "enabled", "reason")).splitlines() == [
        "id     enabled  reason",
        "ep_1   true     -",
        "ep_22  false    gone for good",
    ]
    assert columns([], ("id",)) == "(none)"


def test_fields_print_one_thing_in_the_order_asked() -> None:
    shown = fields({"b": 1, "status": [1, 2], "a": "x"}, ("a", "status", "missing"))
    assert shown.splitlines() == ["a       x", "status  [1, 2]"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "log_format", "as_json"),
    [(Terminal(), "auto", False), (io.StringIO(), "auto", True),
     (Terminal(), "json", True), (io.StringIO(), "console", False)],
)  # fmt: skip
def test_logs_are_readable_on_a_terminal_and_json_otherwise(
    stream: io.StringIO, log_format: str, as_json: bool
) -> None:
    configure_logging("info", stream, log_format=log_format)
    try:
        structlog.get_logger("t").info("dead.redriven", redriven=3)
    finally:
        configure_logging("info")
    line = stream.getvalue().strip()
    assert "dead.redriven" in line and "redriven" in line
    if as_json:
        assert json.loads(line)["redriven"] == 3
    else:
        with pytest.raises(ValueError):
            json.loads(line)


def test_a_big_body_is_kept_as_a_whole_character_excerpt_and_its_size() -> None:
    small = b'{"a": "\xc3\xa9"}'
    assert dead_body_fields(small) == (("body", small.decode()),)
    big = b"x" * (DEAD_EXCERPT_BYTES - 1) + "é".encode() * DEAD_BODY_MAX_BYTES
    kept = dict(dead_body_fields(big))
    assert kept["body_size"] == str(len(big))
    assert kept["body_excerpt"] == "x" * (DEAD_EXCERPT_BYTES - 1)  # é cut in half: left out


def test_cursors_step_just_below_an_entry_id() -> None:
    assert just_below("5-3") == "5-2"
    assert just_below("5") == f"4-{2**64 - 1}"
    assert just_below("0-0") is None
    assert valid_id("1712345678901-0") and not valid_id("1" * 20) and not valid_id("a-1")
    with pytest.raises(ValueError, match="cursor"):
        just_below("later")
