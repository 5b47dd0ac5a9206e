"""Generic signature schemes that configuring a connection refuses, each with the field the
refusal names: the admin API (422) and the CLI (exit 2) refuse the same ones."""

from __future__ import annotations

import pytest

# MAX_TOLERANCE_SECONDS in connectors/generic/signature.py is 3600: 7200 is over it.
BAD_SCHEMES = [
    pytest.param(
        {"signature_header": "x-sig", "timestamp_header": "x-ts"},
        "timestamp_header",
        id="unsigned-timestamp",
    ),
    pytest.param(
        {
            "signature_header": "x-sig",
            "timestamp_header": "x-ts",
            "signed_payload": "timestamp.body",
            "tolerance_seconds": 7200,
        },
        "tolerance_seconds",
        id="tolerance-over-1h",
    ),
    pytest.param(
        {"signature_header": "x-sig", "algorithm": "md5"}, "algorithm", id="unknown-algorithm"
    ),
]
