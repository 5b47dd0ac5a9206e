"""The path language of mapping files: where a value lives in a provider's JSON.

A path is dotted names with optional array steps, JSONPath-like without the filters:
``data.id``, ``events[*]``, ``lines[0].amount``, ``items.0.id`` (a bare number indexes an
array, as ``GenericSchemeConfig.event_id_path`` already allows), ``$`` or ``""`` for the
document itself. ``[*]`` selects every element and is only meaningful where a mapping
expects several values (the webhook's items); everywhere else a path names one value.
Names containing ``.``, ``[`` or ``]`` cannot be addressed: no provider we know uses them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

_NAME = re.compile(r"[^.\[\]]+")
_BRACKET = re.compile(r"\[(\*|\d+)\]")
# Paths come from a few mapping files, each with a few dozen: parse each once.
_PARSED_PATHS = 4096


class _Missing:
    """The value at a path that leads nowhere (distinct from a JSON null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True)
class Key:
    name: str


@dataclass(frozen=True)
class Index:
    position: int


@dataclass(frozen=True)
class Each:
    """``[*]``: every element of an array."""


Step = Key | Index | Each


@lru_cache(maxsize=_PARSED_PATHS)
def parse_path(path: str) -> tuple[Step, ...]:
    """The steps of ``path``; ValueError naming the offending character otherwise."""
    text = path.strip()
    if text in {"", "$"}:
        return ()
    if text.startswith("$."):
        text = text[2:]
    elif text.startswith("$["):
        text = text[1:]
    steps: list[Step] = []
    position = 0
    expect_name = not text.startswith("[")
    while position < len(text):
        if expect_name:
            match = _NAME.match(text, position)
            if match is None:
                raise ValueError(f"path {path!r}: expected a name at character {position + 1}")
            name = match.group()
            steps.append(Index(int(name)) if name.isascii() and name.isdigit() else Key(name))
            position = match.end()
        while position < len(text) and text[position] == "[":
            bracket = _BRACKET.match(text, position)
            if bracket is None:
                raise ValueError(
                    f"path {path!r}: expected [*] or [<number>] at character {position + 1}"
                )
            inner = bracket.group(1)
            steps.append(Each() if inner == "*" else Index(int(inner)))
            position = bracket.end()
        if position < len(text):
            if text[position] != "." or position + 1 == len(text):
                raise ValueError(f"path {path!r}: unexpected {text[position]!r}")
            position += 1
        expect_name = True
    return tuple(steps)


def has_each(path: str) -> bool:
    return any(isinstance(step, Each) for step in parse_path(path))


def read(document: Any, path: str, *, null_through: bool = False) -> Any:
    """The one value at ``path`` (which must not contain ``[*]``), or MISSING.

    With ``null_through``, a null on the way is the value: ``site.street`` of
    ``{"site": null}`` is None (the provider cleared the whole object), not MISSING.
    """
    node = document
    for step in parse_path(path):
        if node is None and null_through:
            return None
        if isinstance(step, Key) and isinstance(node, Mapping):
            node = node.get(step.name, MISSING)
        elif isinstance(step, Index) and _is_array(node) and step.position < len(node):
            node = node[step.position]
        elif isinstance(step, Index) and isinstance(node, Mapping):
            # "items.0" on an object keyed by digits: the digits are a name after all.
            node = node.get(str(step.position), MISSING)
        else:
            return MISSING
        if node is MISSING:
            return MISSING
    return node


def select(document: Any, path: str) -> list[tuple[str, Any]]:
    """Every value ``path`` reaches, each with its concrete path (``events[1]``).

    A step that leads nowhere selects nothing; the caller decides whether none is an error.
    """
    found: list[tuple[str, Any]] = [("$", document)]
    for step in parse_path(path):
        following: list[tuple[str, Any]] = []
        for where, node in found:
            if isinstance(step, Key) and isinstance(node, Mapping) and step.name in node:
                following.append((_join(where, step.name), node[step.name]))
            elif isinstance(step, Index) and _is_array(node) and step.position < len(node):
                following.append((f"{where}[{step.position}]", node[step.position]))
            elif isinstance(step, Each) and _is_array(node):
                following.extend((f"{where}[{i}]", item) for i, item in enumerate(node))
        found = following
    return found


def write(document: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` in ``document`` to ``value``, creating objects and arrays on the way.

    ValueError when the path is the document itself, uses ``[*]``, or crosses a value that
    is already something else (a string where an object is needed).
    """
    steps = parse_path(path)
    if not steps:
        raise ValueError("cannot write to the document root")
    node: Any = document
    for here, after in zip(steps, (*steps[1:], None), strict=True):
        if isinstance(here, Each):
            raise ValueError(f"path {path!r}: [*] cannot be written")
        if after is None:
            _store(node, here, value, path)
            return
        child = _child(node, here)
        if child is MISSING or child is None:
            child = [] if isinstance(after, Index) else {}
            _store(node, here, child, path)
        node = child


def _child(node: Any, step: Key | Index) -> Any:
    if isinstance(step, Key):
        return node.get(step.name, MISSING) if isinstance(node, dict) else MISSING
    return node[step.position] if isinstance(node, list) and step.position < len(node) else MISSING


def _store(node: Any, step: Key | Index, value: Any, path: str) -> None:
    if isinstance(step, Key) and isinstance(node, dict):
        node[step.name] = value
    elif isinstance(step, Index) and isinstance(node, list):
        node.extend([None] * (step.position + 1 - len(node)))
        node[step.position] = value
    else:
        raise ValueError(f"path {path!r} crosses a value that is neither object nor array")


def _is_array(node: Any) -> bool:
    return isinstance(node, Sequence) and not isinstance(node, str | bytes | bytearray)


def _join(where: str, name: str) -> str:
    return name if where == "$" else f"{where}.{name}"
