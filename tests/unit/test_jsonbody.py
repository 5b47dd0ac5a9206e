"""The request-body parser: its nesting limit, and every failure a NotJsonError."""

from __future__ import annotations

import pytest

from crmsync.common.jsonbody import MAX_DEPTH, NotJsonError, parse_json


def test_nesting_up_to_the_limit_parses_and_one_more_is_refused() -> None:
    # Pins pydantic-core's fixed limit: an upgrade that moves it fails here, not in prod.
    deepest = '{"a": ' * MAX_DEPTH + "1" + "}" * MAX_DEPTH
    assert parse_json(deepest)["a"]["a"]["a"] is not None
    with pytest.raises(NotJsonError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_json('{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1))


@pytest.mark.parametrize("depth", [MAX_DEPTH + 2, 1_000, 1_000_000])
def test_deep_nesting_is_a_not_json_error_never_a_recursion_error(depth: int) -> None:
    with pytest.raises(NotJsonError):
        parse_json(b"[" * depth + b"]" * depth)


@pytest.mark.parametrize(
    "raw",
    [b"", b"{nope", b"\xff\xfe\xff", b"NaN", b"[Infinity]", b'"\\ud800"', b'{"a": 1} x'],
    ids=["empty", "broken", "bad-utf8", "nan", "infinity", "lone-surrogate", "trailing"],
)
def test_what_is_not_json_is_refused(raw: bytes) -> None:
    with pytest.raises(NotJsonError):
        parse_json(raw)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b'{"a": [1, 2.5, "x", null, true]}', {"a": [1, 2.5, "x", None, True]}),
        (b"\xef\xbb\xbf[1]", [1]),
        ('["é"]'.encode("utf-16"), ["é"]),
        ('["é"]'.encode("utf-32"), ["é"]),
        (b'"\\ud83d\\ude00"', "\U0001f600"),
        (b"123456789012345678901234567890", 123456789012345678901234567890),
    ],
    ids=["plain", "utf8-bom", "utf16", "utf32", "surrogate-pair", "big-int"],
)
def test_what_json_loads_accepted_still_parses(raw: bytes, value: object) -> None:
    assert parse_json(raw) == value
