"""The /v1 route table: each route binds a path to one operation of ``crmsync.application``."""

from __future__ import annotations

from pydantic import BaseModel

from crmsync.application import (
    apikeys,
    conflicts,
    connections,
    deadletters,
    ledger_io,
    records,
    replay,
    syncjobs,
    synclog,
)
from crmsync.application import models as m
from services.admin.api import Call, Handler, Route


def _connections() -> list[Route]:
    async def create(c: Call) -> BaseModel:
        return await connections.create(c.conn, c.ctx, c.body)

    async def list_(c: Call) -> BaseModel:
        return await connections.list_(c.conn, c.ctx, c.query)

    async def get(c: Call) -> BaseModel:
        return await connections.get(c.conn, c.ctx, c.path["connection_id"])

    async def update(c: Call) -> BaseModel:
        return await connections.update(c.conn, c.ctx, c.path["connection_id"], c.body)

    async def delete(c: Call) -> None:
        await connections.delete(c.conn, c.ctx, c.path["connection_id"])

    async def disable(c: Call) -> BaseModel:
        return await connections.set_status(c.conn, c.ctx, c.path["connection_id"], "disabled")

    async def enable(c: Call) -> BaseModel:
        return await connections.set_status(c.conn, c.ctx, c.path["connection_id"], "active")

    async def rotate(c: Call) -> BaseModel:
        return await connections.rotate_secret(
            c.conn, c.ctx, c.path["connection_id"], c.body, now=c.now
        )

    async def credentials(c: Call) -> None:
        await connections.set_credentials(c.conn, c.ctx, c.path["connection_id"], c.body.root)

    async def health(c: Call) -> BaseModel:
        return await connections.health(c.conn, c.ctx, c.path["connection_id"], now=c.now)

    one = "/v1/connections/{connection_id}"
    tag = "connections"
    return [
        Route(
            "POST",
            "/v1/connections",
            create,
            "admin",
            "Create a connection (its webhook URL and secret, or API key, are shown once)",
            tag,
            "createConnection",
            body=m.ConnectionCreate,
            response=m.ConnectionCreated,
            status=201,
            errors=(409,),
        ),
        Route(
            "GET",
            "/v1/connections",
            list_,
            "read",
            "List connections",
            tag,
            "listConnections",
            query=m.ConnectionQuery,
            response=m.Page[m.ConnectionOut],
        ),
        Route(
            "GET",
            one,
            get,
            "read",
            "Show a connection",
            tag,
            "getConnection",
            response=m.ConnectionOut,
        ),
        Route(
            "PATCH",
            one,
            update,
            "admin",
            "Change settings: direction, entity types, "
            "conflict policy, field mapping, rate limit, base URL",
            tag,
            "updateConnection",
            body=m.ConnectionUpdate,
            response=m.ConnectionOut,
            errors=(409,),
        ),
        Route(
            "DELETE",
            one,
            delete,
            "admin",
            "Delete a connection (records stay)",
            tag,
            "deleteConnection",
            status=204,
        ),
        Route(
            "POST",
            f"{one}/disable",
            disable,
            "admin",
            "Stop receiving and pushing",
            tag,
            "disableConnection",
            response=m.ConnectionOut,
        ),
        Route(
            "POST",
            f"{one}/enable",
            enable,
            "admin",
            "Resume a disabled connection",
            tag,
            "enableConnection",
            response=m.ConnectionOut,
        ),
        Route(
            "POST",
            f"{one}/webhook-secret/rotate",
            rotate,
            "admin",
            "Rotate the webhook secret; the old one verifies until the overlap ends",
            tag,
            "rotateWebhookSecret",
            body=m.SecretRotate,
            response=m.SecretRotated,
            errors=(409,),
        ),
        Route(
            "PUT",
            f"{one}/credentials",
            credentials,
            "admin",
            "Set the provider API credentials (API key or OAuth2 tokens); never returned",
            tag,
            "setConnectionCredentials",
            body=m.CredentialsIn,
            status=204,
        ),
        Route(
            "GET",
            f"{one}/health",
            health,
            "read",
            "Last webhook and push, error rate, circuit, token expiry",
            tag,
            "getConnectionHealth",
            response=m.ConnectionHealth,
        ),
    ]


def _record_handlers(entity_type: str) -> tuple[Handler, Handler]:
    async def list_(c: Call) -> BaseModel:
        return await records.list_(c.conn, c.ctx, entity_type, c.query)

    async def get(c: Call) -> BaseModel:
        return await records.get(c.conn, c.ctx, entity_type, c.path["record_id"])

    return list_, get


def _records() -> list[Route]:
    queries: dict[str, type[m.RecordQuery]] = {
        "customers": m.CustomerQuery,
        "invoices": m.InvoiceQuery,
    }
    routes = []
    for collection, entity_type in records.COLLECTIONS.items():
        list_, get = _record_handlers(entity_type)
        title = collection.capitalize()
        routes += [
            Route(
                "GET",
                f"/v1/{collection}",
                list_,
                "read",
                f"List {collection}",
                "records",
                f"list{title}",
                query=queries.get(collection, m.RecordQuery),
                response=m.Page[m.RecordOut],
            ),
            Route(
                "GET",
                f"/v1/{collection}/{{record_id}}",
                get,
                "read",
                f"Show a {entity_type} with its links",
                "records",
                f"get{title[:-1]}",
                response=m.RecordOut,
            ),
        ]
    return routes


def _sync_log() -> list[Route]:
    async def list_(c: Call) -> BaseModel:
        return await synclog.list_(c.conn, c.ctx, c.query)

    async def summary(c: Call) -> BaseModel:
        return await synclog.summary(c.conn, c.ctx, c.query, now=c.now)

    return [
        Route(
            "GET",
            "/v1/sync-log",
            list_,
            "read",
            "Inbound and outbound events, newest first",
            "sync-log",
            "listSyncLog",
            query=m.SyncLogQuery,
            response=m.Page[m.SyncLogEntry],
        ),
        Route(
            "GET",
            "/v1/sync-log/summary",
            summary,
            "read",
            "Counts per outcome",
            "sync-log",
            "getSyncLogSummary",
            query=m.SyncLogSummaryQuery,
            response=m.SyncLogSummary,
        ),
    ]


def _audit() -> list[Route]:
    async def ledger(c: Call) -> BaseModel:
        return await ledger_io.audit(c.conn, c.ctx, c.query, now=c.now)

    return [
        Route(
            "GET",
            "/v1/audit/ledger",
            ledger,
            "read",
            "Every acknowledgement accounted for, per connection (DESIGN invariant 13)",
            "audit",
            "getLedger",
            query=m.LedgerQuery,
            response=m.LedgerReport,
            errors=(503,),
        ),
    ]


def _dead_letters() -> list[Route]:
    async def list_(c: Call) -> BaseModel:
        return await deadletters.list_(c.conn, c.ctx, c.query)

    async def get(c: Call) -> BaseModel:
        return await deadletters.get(c.conn, c.ctx, c.path["dead_letter_id"])

    async def redrive(c: Call) -> BaseModel:
        return await deadletters.redrive_one(c.conn, c.ctx, c.path["dead_letter_id"])

    async def discard(c: Call) -> BaseModel:
        return await deadletters.discard(c.conn, c.ctx, c.path["dead_letter_id"])

    async def redrive_many(c: Call) -> BaseModel:
        return await deadletters.redrive_many(c.conn, c.ctx, c.body)

    one = "/v1/dead-letters/{dead_letter_id}"
    tag = "dead-letters"
    return [
        Route(
            "GET",
            "/v1/dead-letters",
            list_,
            "read",
            "List dead letters",
            tag,
            "listDeadLetters",
            query=m.DeadLetterQuery,
            response=m.Page[m.DeadLetterOut],
        ),
        Route(
            "GET",
            one,
            get,
            "read",
            "Show a dead letter with its payload",
            tag,
            "getDeadLetter",
            response=m.DeadLetterDetail,
        ),
        Route(
            "POST",
            f"{one}/redrive",
            redrive,
            "admin",
            "Redrive: it re-enters at its stage",
            tag,
            "redriveDeadLetter",
            response=m.DeadLetterOut,
            errors=(409, 503),
        ),
        Route(
            "POST",
            f"{one}/discard",
            discard,
            "admin",
            "Discard a dead letter",
            tag,
            "discardDeadLetter",
            response=m.DeadLetterOut,
            errors=(409,),
        ),
        Route(
            "POST",
            "/v1/dead-letters/redrive",
            redrive_many,
            "admin",
            "Redrive many, by ids or filter",
            tag,
            "redriveDeadLetters",
            body=m.RedriveMany,
            response=m.RedriveResult,
            errors=(404, 503),
        ),
    ]


def _replay() -> list[Route]:
    async def run(c: Call) -> BaseModel:
        return await replay.replay(c.conn, c.ctx, c.body)

    return [
        Route(
            "POST",
            "/v1/replay",
            run,
            "admin",
            "Re-process a connection's webhooks from a time or an offset",
            "replay",
            "replayWebhooks",
            body=m.ReplayRequest,
            response=m.ReplayResult,
            errors=(404, 503),
        ),
    ]


def _sync_jobs() -> list[Route]:
    async def create(c: Call) -> BaseModel:
        return await syncjobs.create(c.conn, c.ctx, c.body)

    async def list_(c: Call) -> BaseModel:
        return await syncjobs.list_(c.conn, c.ctx, c.query)

    async def get(c: Call) -> BaseModel:
        return await syncjobs.get(c.conn, c.ctx, c.path["job_id"])

    async def cancel(c: Call) -> BaseModel:
        return await syncjobs.cancel(c.conn, c.ctx, c.path["job_id"])

    tag = "sync-jobs"
    return [
        Route(
            "POST",
            "/v1/sync-jobs",
            create,
            "admin",
            "Start a backfill or reconciliation",
            tag,
            "createSyncJob",
            body=m.SyncJobCreate,
            response=m.SyncJobOut,
            status=201,
            errors=(404, 409),
        ),
        Route(
            "GET",
            "/v1/sync-jobs",
            list_,
            "read",
            "List sync jobs, newest first",
            tag,
            "listSyncJobs",
            query=m.SyncJobQuery,
            response=m.Page[m.SyncJobOut],
        ),
        Route(
            "GET",
            "/v1/sync-jobs/{job_id}",
            get,
            "read",
            "A sync job's progress",
            tag,
            "getSyncJob",
            response=m.SyncJobOut,
        ),
        Route(
            "POST",
            "/v1/sync-jobs/{job_id}/cancel",
            cancel,
            "admin",
            "Cancel a sync job",
            tag,
            "cancelSyncJob",
            response=m.SyncJobOut,
            errors=(409,),
        ),
    ]


def _conflicts() -> list[Route]:
    async def list_(c: Call) -> BaseModel:
        return await conflicts.list_(c.conn, c.ctx, c.query)

    async def get(c: Call) -> BaseModel:
        return await conflicts.get(c.conn, c.ctx, c.path["conflict_id"])

    async def resolve(c: Call) -> BaseModel:
        return await conflicts.resolve(c.conn, c.ctx, c.path["conflict_id"], c.body, now=c.now)

    tag = "conflicts"
    return [
        Route(
            "GET",
            "/v1/conflicts",
            list_,
            "read",
            "List parked conflicts",
            tag,
            "listConflicts",
            query=m.ConflictQuery,
            response=m.Page[m.ConflictOut],
        ),
        Route(
            "GET",
            "/v1/conflicts/{conflict_id}",
            get,
            "read",
            "Show a conflict",
            tag,
            "getConflict",
            response=m.ConflictOut,
        ),
        Route(
            "POST",
            "/v1/conflicts/{conflict_id}/resolve",
            resolve,
            "admin",
            "Resolve by choosing a value",
            tag,
            "resolveConflict",
            body=m.ConflictResolve,
            response=m.ConflictOut,
            errors=(409,),
        ),
    ]


def _api_keys() -> list[Route]:
    async def create(c: Call) -> BaseModel:
        return await apikeys.create(c.conn, c.ctx, c.body, now=c.now)

    async def list_(c: Call) -> BaseModel:
        return await apikeys.list_(c.conn, c.ctx, c.query)

    async def get(c: Call) -> BaseModel:
        return await apikeys.get(c.conn, c.ctx, c.path["key_id"])

    async def revoke(c: Call) -> BaseModel:
        return await apikeys.revoke(c.conn, c.ctx, c.path["key_id"])

    async def rotate(c: Call) -> BaseModel:
        return await apikeys.rotate(c.conn, c.ctx, c.path["key_id"], c.body, now=c.now)

    one = "/v1/api-keys/{key_id}"
    tag = "api-keys"
    return [
        Route(
            "POST",
            "/v1/api-keys",
            create,
            "admin",
            "Create an API key (shown once)",
            tag,
            "createApiKey",
            body=m.ApiKeyCreate,
            response=m.ApiKeyCreated,
            status=201,
            errors=(404,),
        ),
        Route(
            "GET",
            "/v1/api-keys",
            list_,
            "read",
            "List API keys (never the keys)",
            tag,
            "listApiKeys",
            query=m.ApiKeyQuery,
            response=m.Page[m.ApiKeyOut],
        ),
        Route("GET", one, get, "read", "Show an API key", tag, "getApiKey", response=m.ApiKeyOut),
        Route(
            "POST",
            f"{one}/revoke",
            revoke,
            "admin",
            "Revoke an API key now",
            tag,
            "revokeApiKey",
            response=m.ApiKeyOut,
        ),
        Route(
            "POST",
            f"{one}/rotate",
            rotate,
            "admin",
            "A new key of the same scope; the old one expires after the overlap",
            tag,
            "rotateApiKey",
            body=m.ApiKeyRotate,
            response=m.ApiKeyCreated,
            errors=(409,),
        ),
    ]


def routes() -> list[Route]:
    return [
        *_connections(),
        *_records(),
        *_sync_log(),
        *_audit(),
        *_dead_letters(),
        *_replay(),
        *_sync_jobs(),
        *_conflicts(),
        *_api_keys(),
    ]
