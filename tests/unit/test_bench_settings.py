"""``bench/run --set NAME=VALUE``: a CRMSYNC_ setting for every service a run starts, so a
knob is A/B'd by running the same code twice (issue 18's rounds changed defaults to do it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.__main__ import parse_args
from bench.stack import Stack
from crmsync.common.settings import CommonSettings


def test_each_set_names_a_setting_without_its_prefix() -> None:
    args = parse_args(
        ["--set", "processor_batch_quiet_seconds=0.01", "--set", "CRMSYNC_OUTBOUND_CONCURRENCY=64"]
    )

    assert args.settings == [
        ("processor_batch_quiet_seconds", "0.01"),
        ("outbound_concurrency", "64"),
    ]


@pytest.mark.parametrize("text", ["processor_batch_size", "=5", "not a name=1"])
def test_a_set_that_is_not_name_equals_value_is_refused(text: str) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--set", text])


def test_the_services_get_the_settings_and_the_stack_keeps_its_own(tmp_path: Path) -> None:
    stack = Stack(
        CommonSettings(),
        "postgresql://bench@127.0.0.1/bench_x",
        "benchx.",
        "k1:" + "A" * 44,
        tmp_path,
        {"processor_batch_quiet_seconds": "0.01", "kafka_topic_prefix": "someone-elses."},
    )

    env = stack.env(processor_port=9)

    assert env["CRMSYNC_PROCESSOR_BATCH_QUIET_SECONDS"] == "0.01"
    # The run's own topics, database and ports win over a --set.
    assert env["CRMSYNC_KAFKA_TOPIC_PREFIX"] == "benchx."
    assert env["CRMSYNC_PROCESSOR_PORT"] == "9"
