"""Stripe's form encoding: nested parameters as ``address[line1]=…``, lists as ``x[0]=…``.

Stripe takes every POST body as ``application/x-www-form-urlencoded`` and spells nested
objects and arrays with brackets, as its official libraries do (``metadata[key]=v``,
``expand[0]=latest_charge``). An empty string unsets a field; the encoder writes None that
way. The decoder is the simulator's half: the same grammar read back into nested dicts
and lists of strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def encode_form(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``params`` as flat bracketed form fields; None becomes "" (Stripe's "unset")."""
    fields: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        fields.update(_encode_value(name, value))
    return fields


def _encode_value(name: str, value: Any) -> dict[str, str]:
    if value is None:
        return {name: ""}
    if isinstance(value, bool):
        return {name: "true" if value else "false"}
    if isinstance(value, int | str):
        return {name: str(value)}
    if isinstance(value, Decimal):
        return {name: format(value, "f")}
    if isinstance(value, Mapping):
        return encode_form(value, name)
    if isinstance(value, list | tuple):
        fields: dict[str, str] = {}
        for index, item in enumerate(value):
            fields.update(_encode_value(f"{name}[{index}]", item))
        return fields
    raise TypeError(f"{name}: cannot form-encode a {type(value).__name__}")


class _Sequence(dict[str, Any]):
    """A container whose keys are positions: becomes a list once decoding is done."""


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Form fields back into nested dicts and lists (values stay strings).

    ``a[]=x&a[]=y`` and ``a[0]=x&a[1]=y`` both give ``{"a": ["x", "y"]}``. A field whose
    name is malformed (``a[b``) is kept whole as a plain key, as a lenient server would.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, bracket, rest = key.partition("[")
        segments = _SEGMENT.findall(bracket + rest) if bracket else []
        if bracket and "".join(f"[{s}]" for s in segments) != bracket + rest:
            root[key] = value
            continue
        path = [head, *segments]
        node: dict[str, Any] = root
        for index, raw in enumerate(path):
            segment = str(len(node)) if isinstance(node, _Sequence) and raw == "" else raw
            if index == len(path) - 1:
                node[segment] = value
                break
            following = path[index + 1]
            child = node.get(segment)
            if not isinstance(child, dict):
                sequence = following == "" or following.isdigit()
                child = _Sequence() if sequence else {}
                node[segment] = child
            node = child
    finished: dict[str, Any] = _finish(root)
    return finished


def _finish(node: Any) -> Any:
    if isinstance(node, _Sequence):
        return [_finish(node[k]) for k in sorted(node, key=lambda k: int(k) if k.isdigit() else 0)]
    if isinstance(node, dict):
        return {k: _finish(v) for k, v in node.items()}
    return node
