from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from schemas.errors import Stop

# How the stack reports progress: one line at a time, to the operator.
Say = Callable[[str], None]


class StackError(Stop):
    """The local stack could not be brought to the requested state; the message says why."""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    healthy: bool
    detail: str
    endpoint: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
