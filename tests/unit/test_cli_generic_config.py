"""`crmsync connections add --generic-config FILE` refuses a bad scheme before it touches
the database: exit 2 (invalid configuration) and the field named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crmsync.cli.main import main
from tests.generic_schemes import BAD_SCHEMES


@pytest.mark.parametrize(("scheme", "field"), BAD_SCHEMES)
def test_a_bad_generic_scheme_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheme: dict[str, object], field: str
) -> None:
    path = tmp_path / "scheme.json"
    path.write_text(json.dumps(scheme))
    with pytest.raises(SystemExit) as exited:
        main(
            [
                *("connections", "add", "--provider", "generic", "--tenant", "acme"),
                *("--generic-config", str(path)),
            ]
        )
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert field in err
