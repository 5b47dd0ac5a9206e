"""The admin commands' list queries and request bodies are read from the options named like
their fields."""

from __future__ import annotations

import argparse
import uuid

import pytest

from crmsync.application.models import ApiKeyQuery, DeadLetterQuery, SyncJobCreate
from crmsync.cli.admin_common import EXIT_INVALID, CommandError, body_from, query_from


def test_each_field_comes_from_the_option_of_its_name() -> None:
    connection = uuid.uuid4()
    args = argparse.Namespace(
        tenant="acme",
        json=False,
        limit=5,
        cursor=None,
        stage="outbound",
        reason=None,
        connection=connection,
        state="all",
    )
    query = query_from(DeadLetterQuery, args)
    assert query == DeadLetterQuery(limit=5, stage="outbound", connection=connection, state="all")


def test_an_option_of_another_name_is_read_under_that_name() -> None:
    args = argparse.Namespace(limit=None, cursor=None, all=True)
    assert query_from(ApiKeyQuery, args, include_revoked="all").include_revoked is True


def test_options_not_offered_leave_the_defaults() -> None:
    assert query_from(DeadLetterQuery, argparse.Namespace()) == DeadLetterQuery()


def test_an_invalid_option_is_invalid_input() -> None:
    with pytest.raises(CommandError) as caught:
        query_from(DeadLetterQuery, argparse.Namespace(limit=0))
    assert caught.value.code == EXIT_INVALID


def test_a_body_reads_its_fields_the_same_way_but_for_the_values_given() -> None:
    connection = uuid.uuid4()
    args = argparse.Namespace(
        json=True,
        connection=connection,
        kind="reconcile",
        entity_types="customer,invoice",
        modified_since="2026-12-01T09:00:00+00:00",
    )
    body = body_from(SyncJobCreate, args, entity_types=["customer", "invoice"])
    assert body == SyncJobCreate.model_validate(
        {
            "connection": connection,
            "kind": "reconcile",
            "entity_types": ["customer", "invoice"],
            "modified_since": "2026-12-01T09:00:00+00:00",
        }
    )
