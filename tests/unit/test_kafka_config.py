from __future__ import annotations

import re
from pathlib import Path

from crmsync.localstack.kafka import KafkaNode, kafka_version
from crmsync.localstack.settings import LocalStackSettings


def test_server_properties_render_every_token(tmp_path: Path) -> None:
    settings = LocalStackSettings(
        state_dir=tmp_path, kafka_bootstrap_servers="127.0.0.1:19092", kafka_controller_port=19093
    )
    text = KafkaNode(settings).render_config()
    assert not re.search(r"@[A-Z_]+@", text)
    assert "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in text
    assert f"log.dirs={tmp_path / 'kafka' / 'data'}" in text


def test_kafka_version_is_pinned_to_an_exact_release() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", kafka_version())
