"""Results: one figure each, with its baseline and target when it has them."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Target:
    """``value`` (or, with ``of_baseline``, the ratio to the baseline) ``op`` ``bound``."""

    op: str
    bound: float
    of_baseline: bool = False

    def describe(self, unit: str) -> str:
        if self.of_baseline:
            return f"{self.op} {self.bound:.0%} of baseline"
        return f"{self.op} {self.bound:g} {unit}"


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    targets: tuple[Target, ...] = ()
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        if not self.targets:
            return None
        return all(self._meets(t) for t in self.targets)

    def _meets(self, target: Target) -> bool:
        measured = self.ratio if target.of_baseline else self.value
        return measured is not None and COMPARE[target.op](measured, target.bound)

    @property
    def target(self) -> str:
        return " and ".join(t.describe(self.unit) for t in self.targets)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "value": self.value, "unit": self.unit}
        if self.ratio is not None:
            out["baseline"] = self.baseline
            out["ratio"] = self.ratio
        if self.targets:
            out["target"] = self.target
            out["met"] = self.met
        if self.note:
            out["note"] = self.note
        return out


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3f}"


def table(results: Sequence[Result]) -> str:
    rows = [("name", "value", "unit", "baseline", "ratio", "target", "")]
    for r in results:
        rows.append(
            (
                r.name,
                _number(r.value),
                r.unit,
                _number(r.baseline),
                f"{r.ratio:.2f}" if r.ratio is not None else "",
                r.target,
                {True: "met", False: "MISSED", None: ""}[r.met],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {1, 3, 4}
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: Path, results: Sequence[Result]) -> None:
    # allow_nan=False: a figure that could not be measured fails loudly, not as "NaN".
    path.write_text(json.dumps([r.as_json() for r in results], indent=2, allow_nan=False) + "\n")
