"""Write the JSON Schema of every exported model to ``schemas/json/``.

Run ``crmsync schemas export`` (or ``python -m schemas.export``) after changing a model;
a test fails while the committed files are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.changes import ChangeEvent, InternalChange
from schemas.envelope import WebhookEnvelope
from schemas.records import CanonicalRecord, Customer, Invoice, Job, Payment

EXPORTED: tuple[type[BaseModel], ...] = (
    WebhookEnvelope,
    ChangeEvent,
    InternalChange,
    Customer,
    Job,
    Invoice,
    Payment,
    CanonicalRecord,
)

JSON_DIR = Path(__file__).with_name("json")


def render() -> dict[str, str]:
    """File name → exact file content for every exported model."""
    return {
        f"{model.__name__}.schema.json": json.dumps(
            model.model_json_schema(mode="serialization"), indent=2, sort_keys=True
        )
        + "\n"
        for model in EXPORTED
    }


def export(directory: Path = JSON_DIR) -> list[str]:
    """Write the files; return the names whose content changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, content in render().items():
        path = directory / name
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
            changed.append(name)
    return changed


def main() -> None:
    changed = export()
    print("\n".join(changed) if changed else "schemas up to date", file=sys.stderr)


if __name__ == "__main__":
    main()
