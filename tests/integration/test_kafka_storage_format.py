"""Formatting a fresh Kafka data directory must work for every random cluster id.

CI once failed one run in 64: a base64url cluster id can start with "-", and Kafka's
StorageTool then reads the id as an option ("argument --cluster-id/-t: expected one
argument"). These tests format real storage with the real jars.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from crmsync.localstack import kafka as kafka_module
from crmsync.localstack.kafka import KafkaNode
from crmsync.localstack.settings import LocalStackSettings


def _node(tmp_path: Path) -> KafkaNode:
    settings = LocalStackSettings(
        state_dir=tmp_path, kafka_bootstrap_servers="127.0.0.1:19092", kafka_controller_port=19093
    )
    node = KafkaNode(settings)
    node.fetch_jars(lambda _line: None)
    node.data_dir.mkdir(parents=True, exist_ok=True)
    node.logs_dir.mkdir(parents=True, exist_ok=True)
    node.config_file.write_text(node.render_config())
    return node


def test_a_random_id_that_would_start_with_a_dash_still_formats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0xF8 encodes to "-" as the first base64url character.
    dashed = [uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x42" * 16)]
    monkeypatch.setattr(
        kafka_module.uuid, "uuid4", lambda: dashed.pop(0) if dashed else uuid.uuid4()
    )
    node = _node(tmp_path)
    node._format_storage()
    props = (node.data_dir / "meta.properties").read_text()
    cluster_id = next(
        line.split("=", 1)[1] for line in props.splitlines() if line.startswith("cluster.id=")
    )
    assert not cluster_id.startswith("-")
    assert len(cluster_id) == 22


def test_new_cluster_ids_never_start_with_a_dash() -> None:
    ids = [kafka_module.new_cluster_id() for _ in range(2_000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
