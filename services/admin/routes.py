"""The /v1 route table: each route binds a path to one operation of ``crmsync.application``.

The table is declarative: method, path, operation, scope, what the OpenAPI document says,
and the request and response models. One generic handler (``services.admin.api``) serves
every row, passing the operation its path ids, query or body, and ``now`` by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from crmsync.application import models as m
from crmsync.application import (
    records,
)
from services.admin.api import Route

_CONNECTION = "/v1/connections/{connection_id}"
_DEAD_LETTER = "/v1/dead-letters/{dead_letter_id}"
_SYNC_JOB = "/v1/sync-jobs/{job_id}"
_CONFLICT = "/v1/conflicts/{conflict_id}"
_API_KEY = "/v1/api-keys/{key_id}"
_ENDPOINT = "/v1/notification-endpoints/{endpoint_id}"
_WINDOW = "/v1/freeze-windows/{window_id}"

# Query models of the collections that filter by more than RecordQuery's fields.
_RECORD_QUERIES: dict[str, type[m.RecordQuery]] = {
    "customers": m.CustomerQuery,
    "invoices": m.InvoiceQuery,
}


@dataclass(frozen=True)
class _Tag:
    """The routes of one OpenAPI tag. Reads are GETs that the read scope may call; every
    other method changes something and needs the admin scope."""

    name: str

    def read(
        self,
        path: str,
        operation_id: str,
        summary: str,
        response: type[BaseModel],
        *,
        query: type[BaseModel] | None = None,
        errors: tuple[int, ...] = (),
    ) -> Route:
        return Route(
            "GET",
            path,
            "read",
            summary,
            self.name,
            operation_id,
            query=query,
            response=response,
            errors=errors,
        )

    def change(
        self,
        method: str,
        path: str,
        operation_id: str,
        summary: str,
        *,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
    ) -> Route:
        return Route(
            method,
            path,
            "admin",
            summary,
            self.name,
            operation_id,
            body=body,
            response=response,
            status=status,
            errors=errors,
        )


def _record_routes() -> list[Route]:
    """A list and a show route per collection, the entity type bound into the operation."""
    tag = _Tag("records")
    routes = []
    for collection, entity_type in records.COLLECTIONS.items():
        title = collection.capitalize()
        query = _RECORD_QUERIES.get(collection, m.RecordQuery)
        routes += [
            tag.read(
                f"/v1/{collection}",
                f"list{title}",
                f"List {collection}",
                m.Page[m.RecordOut],
                query=query,
            ),
            tag.read(
                f"/v1/{collection}/{{record_id}}",
                f"get{title[:-1]}",
                f"Show a {entity_type} with its links",
                m.RecordOut,
            ),
        ]
    return routes


def routes() -> list[Route]:
    # Built on each call, not at import: pydantic names a generic model (Page[...]) after
    # the module that first parametrises it at top level.
    api_keys = _Tag("api-keys")
    audit = _Tag("audit")
    conflicts = _Tag("conflicts")
    connections = _Tag("connections")
    dead_letters = _Tag("dead-letters")
    freeze_windows = _Tag("freeze-windows")
    notifications = _Tag("notifications")
    privacy = _Tag("privacy")
    quotas = _Tag("quotas")
    replay = _Tag("replay")
    sync_jobs = _Tag("sync-jobs")
    sync_log = _Tag("sync-log")
    tenant = _Tag("tenant")
    return [
        tenant.read(
            "/v1/tenant",
            "getTenant",
            "The tenant the API key acts for (every other route reaches only its data)",
            m.TenantOut,
        ),
        connections.change(
            "POST",
            "/v1/connections",
            "createConnection",
            "Create a connection (its webhook URL and secret, or API key, are shown once);"
            " 409 when the name is taken or the tenant's connections quota is full",
            body=m.ConnectionCreate,
            response=m.ConnectionCreated,
            status=201,
            errors=(409,),
        ),
        connections.read(
            "/v1/connections",
            "listConnections",
            "List connections",
            m.Page[m.ConnectionOut],
            query=m.ConnectionQuery,
        ),
        connections.read(_CONNECTION, "getConnection", "Show a connection", m.ConnectionOut),
        connections.change(
            "PATCH",
            _CONNECTION,
            "updateConnection",
            "Change settings: direction, entity types, "
            "conflict policy, field mapping, rate limit, base URL",
            body=m.ConnectionUpdate,
            response=m.ConnectionOut,
            errors=(409,),
        ),
        connections.change(
            "DELETE",
            _CONNECTION,
            "deleteConnection",
            "Delete a connection (records stay)",
            status=204,
        ),
        connections.change(
            "POST",
            f"{_CONNECTION}/disable",
            "disableConnection",
            "Stop receiving and pushing",
            response=m.ConnectionOut,
        ),
        connections.change(
            "POST",
            f"{_CONNECTION}/enable",
            "enableConnection",
            "Resume a disabled connection",
            response=m.ConnectionOut,
        ),
        connections.change(
            "POST",
            f"{_CONNECTION}/webhook-secret/rotate",
            "rotateWebhookSecret",
            "Rotate the webhook secret; the old one verifies until the overlap ends",
            body=m.SecretRotate,
            response=m.SecretRotated,
            errors=(409,),
        ),
        connections.change(
            "POST",
            f"{_CONNECTION}/webhook-handshake/await",
            "awaitWebhookHandshake",
            "Take the provider's subscription handshakes for a while (FreshBooks' callback"
            " verification); each code it accepts back becomes one more webhook secret",
            body=m.HandshakeWindow,
            response=m.ConnectionOut,
            errors=(409,),
        ),
        connections.change(
            "POST",
            f"{_CONNECTION}/pause",
            "pauseConnection",
            "Pause applying its webhooks (in), pushing to it (out) or both; they wait, nothing"
            " is refused or lost",
            body=m.PauseRequest,
            response=m.PauseOut,
        ),
        connections.change(
            "POST",
            f"{_CONNECTION}/resume",
            "resumeConnection",
            "End its pauses and windows in force; what they held back goes on in order",
            body=m.ResumeRequest,
            response=m.ResumeResult,
        ),
        freeze_windows.change(
            "POST",
            "/v1/freeze-windows",
            "createFreezeWindow",
            "Schedule a freeze window: one connection or the whole tenant, in and/or out",
            body=m.FreezeWindowCreate,
            response=m.PauseOut,
            status=201,
            errors=(404,),
        ),
        freeze_windows.read(
            "/v1/freeze-windows",
            "listFreezeWindows",
            "Freeze windows not over yet (include_past: all)",
            m.Page[m.PauseOut],
            query=m.FreezeWindowQuery,
        ),
        freeze_windows.read(_WINDOW, "getFreezeWindow", "Show a freeze window", m.PauseOut),
        freeze_windows.change(
            "DELETE",
            _WINDOW,
            "deleteFreezeWindow",
            "Cancel a window not started, or end one in force now (409 when it is over)",
            status=204,
            errors=(409,),
        ),
        connections.change(
            "POST",
            f"{_CONNECTION}/trigger",
            "triggerWebhook",
            "Send the connection a signed sample webhook of its provider, through ingest",
            body=m.TriggerRequest,
            response=m.TriggerResult,
            errors=(409, 503),
        ),
        connections.read(
            "/v1/webhook-samples",
            "listWebhookSamples",
            "The sample webhooks each provider can be sent (POST …/trigger)",
            m.WebhookSamples,
        ),
        quotas.read(
            "/v1/quotas",
            "getQuotas",
            "The tenant's limits and their usage: connections, events this minute, records",
            m.QuotasOut,
        ),
        quotas.change(
            "PUT",
            "/v1/quotas",
            "setQuotas",
            "Set every limit (null: no limit)",
            body=m.QuotaLimitsSet,
            response=m.QuotasOut,
        ),
        quotas.change(
            "PATCH",
            "/v1/quotas",
            "updateQuotas",
            "Change the limits given (null: no limit); the others stay",
            body=m.QuotaLimits,
            response=m.QuotasOut,
        ),
        connections.change(
            "PUT",
            f"{_CONNECTION}/credentials",
            "setConnectionCredentials",
            "Set the provider API credentials (API key or OAuth2 tokens); never returned",
            body=m.CredentialsIn,
            status=204,
        ),
        connections.read(
            f"{_CONNECTION}/health",
            "getConnectionHealth",
            "Last webhook and push, error rate, circuit, token expiry",
            m.ConnectionHealth,
        ),
        *_record_routes(),
        sync_log.read(
            "/v1/sync-log",
            "listSyncLog",
            "Inbound and outbound events, newest first",
            m.Page[m.SyncLogEntry],
            query=m.SyncLogQuery,
        ),
        sync_log.read(
            "/v1/sync-log/summary",
            "getSyncLogSummary",
            "Counts per outcome",
            m.SyncLogSummary,
            query=m.SyncLogSummaryQuery,
        ),
        audit.read(
            "/v1/audit/ledger",
            "getLedger",
            "Every acknowledgement accounted for, per connection (DESIGN invariant 13)",
            m.LedgerReport,
            query=m.LedgerQuery,
            errors=(503,),
        ),
        audit.read(
            "/v1/audit-log",
            "listAuditLog",
            "Who changed what: every mutating call of the API, the CLI and the console",
            m.Page[m.AuditEntry],
            query=m.AuditLogQuery,
        ),
        dead_letters.read(
            "/v1/dead-letters",
            "listDeadLetters",
            "List dead letters",
            m.Page[m.DeadLetterOut],
            query=m.DeadLetterQuery,
        ),
        dead_letters.read(
            _DEAD_LETTER, "getDeadLetter", "Show a dead letter with its payload", m.DeadLetterDetail
        ),
        dead_letters.change(
            "POST",
            f"{_DEAD_LETTER}/redrive",
            "redriveDeadLetter",
            "Redrive: it re-enters at its stage",
            response=m.DeadLetterOut,
            errors=(409, 503),
        ),
        dead_letters.change(
            "POST",
            f"{_DEAD_LETTER}/discard",
            "discardDeadLetter",
            "Discard a dead letter",
            response=m.DeadLetterOut,
            errors=(409,),
        ),
        dead_letters.change(
            "POST",
            "/v1/dead-letters/redrive",
            "redriveDeadLetters",
            "Redrive many, by ids or filter",
            body=m.RedriveMany,
            response=m.RedriveResult,
            errors=(404, 503),
        ),
        replay.change(
            "POST",
            "/v1/replay",
            "replayWebhooks",
            "Re-process a connection's webhooks from a time or an offset",
            body=m.ReplayRequest,
            response=m.ReplayResult,
            errors=(404, 503),
        ),
        sync_jobs.change(
            "POST",
            "/v1/sync-jobs",
            "createSyncJob",
            "Start a backfill or reconciliation",
            body=m.SyncJobCreate,
            response=m.SyncJobOut,
            status=201,
            errors=(404, 409),
        ),
        sync_jobs.read(
            "/v1/sync-jobs",
            "listSyncJobs",
            "List sync jobs, newest first",
            m.Page[m.SyncJobOut],
            query=m.SyncJobQuery,
        ),
        sync_jobs.read(_SYNC_JOB, "getSyncJob", "A sync job's progress", m.SyncJobOut),
        sync_jobs.change(
            "POST",
            f"{_SYNC_JOB}/cancel",
            "cancelSyncJob",
            "Cancel a sync job",
            response=m.SyncJobOut,
            errors=(409,),
        ),
        conflicts.read(
            "/v1/conflicts",
            "listConflicts",
            "List parked conflicts",
            m.Page[m.ConflictOut],
            query=m.ConflictQuery,
        ),
        conflicts.read(_CONFLICT, "getConflict", "Show a conflict", m.ConflictOut),
        conflicts.change(
            "POST",
            f"{_CONFLICT}/resolve",
            "resolveConflict",
            "Resolve by choosing a value",
            body=m.ConflictResolve,
            response=m.ConflictOut,
            errors=(409,),
        ),
        notifications.change(
            "POST",
            "/v1/notification-endpoints",
            "createNotificationEndpoint",
            "Register an endpoint for operational notifications (its signing secret shown once)",
            body=m.NotificationEndpointCreate,
            response=m.NotificationEndpointCreated,
            status=201,
        ),
        notifications.read(
            "/v1/notification-endpoints",
            "listNotificationEndpoints",
            "List notification endpoints",
            m.Page[m.NotificationEndpointOut],
            query=m.PageQuery,
        ),
        notifications.read(
            _ENDPOINT,
            "getNotificationEndpoint",
            "Show a notification endpoint",
            m.NotificationEndpointOut,
        ),
        notifications.change(
            "DELETE",
            _ENDPOINT,
            "deleteNotificationEndpoint",
            "Delete a notification endpoint and its deliveries",
            status=204,
        ),
        notifications.change(
            "POST",
            f"{_ENDPOINT}/test",
            "testNotificationEndpoint",
            "Queue a test message to the endpoint",
            response=m.NotificationDeliveryOut,
            status=202,
        ),
        notifications.read(
            f"{_ENDPOINT}/deliveries",
            "listNotificationDeliveries",
            "An endpoint's deliveries, newest first, with their attempts and last error",
            m.Page[m.NotificationDeliveryOut],
            query=m.NotificationDeliveryQuery,
        ),
        api_keys.change(
            "POST",
            "/v1/api-keys",
            "createApiKey",
            "Create an API key (shown once)",
            body=m.ApiKeyCreate,
            response=m.ApiKeyCreated,
            status=201,
            errors=(404,),
        ),
        api_keys.read(
            "/v1/api-keys",
            "listApiKeys",
            "List API keys (never the keys)",
            m.Page[m.ApiKeyOut],
            query=m.ApiKeyQuery,
        ),
        api_keys.read(
            _API_KEY,
            "getApiKey",
            "Show an API key with its requests per day and when it was last used",
            m.ApiKeyDetail,
        ),
        api_keys.change(
            "POST",
            f"{_API_KEY}/revoke",
            "revokeApiKey",
            "Revoke an API key now",
            response=m.ApiKeyOut,
        ),
        api_keys.change(
            "POST",
            f"{_API_KEY}/rotate",
            "rotateApiKey",
            "A new key of the same scope; the old one expires after the overlap",
            body=m.ApiKeyRotate,
            response=m.ApiKeyCreated,
            errors=(409,),
        ),
        privacy.change(
            "POST",
            "/v1/privacy/export",
            "exportPerson",
            "Everything held for one person (by email): records, links, sync log, audit"
            " entries, and what each connected system holds, read through its API",
            body=m.PrivacyRequest,
            response=m.PrivacyExport,
            errors=(404,),
        ),
        privacy.change(
            "POST",
            "/v1/privacy/erase",
            "erasePerson",
            "Erase one person (by email): anonymised here, deleted or anonymised in every"
            " connected system that allows it, a tombstone so they do not come back; a report"
            " per system",
            body=m.PrivacyRequest,
            response=m.PrivacyErasure,
            errors=(404,),
        ),
    ]
