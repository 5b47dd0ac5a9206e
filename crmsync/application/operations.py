"""Every operation the admin API and the CLI offer, by its OpenAPI operationId.

One table, so the two entry points cannot drift apart: a route names its operation by
operationId (``services/admin/routes.py``) and the CLI's local mode calls the same
function (``crmsync/cli/backend.py``); remote mode sends the request to that route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from crmsync.application import (
    apikeys,
    audit_trail,
    conflicts,
    connections,
    deadletters,
    ledger_io,
    notifications,
    pauses,
    privacy,
    quotas,
    records,
    replay,
    syncjobs,
    synclog,
    tenants,
    trigger,
)

# An application-layer operation, called ``operation(conn, ctx, **arguments)``.
Operation = Callable[..., Awaitable[Any]]


def _record_operations() -> dict[str, Operation]:
    """A list and a show operation per collection, named as their routes are."""
    out: dict[str, Operation] = {}
    for collection, entity_type in records.COLLECTIONS.items():
        title = collection.capitalize()
        out[f"list{title}"] = partial(records.list_, entity_type=entity_type)
        out[f"get{title[:-1]}"] = partial(records.get, entity_type=entity_type)
    return out


# operationId -> the operation: the admin API's route of that operationId runs it
# (services/admin/routes.py), and so does the CLI in local mode.
OPERATIONS: dict[str, Operation] = {
    "getTenant": tenants.current,
    "createConnection": connections.create,
    "listConnections": connections.list_,
    "getConnection": connections.get,
    "updateConnection": connections.update,
    "deleteConnection": connections.delete,
    "disableConnection": partial(connections.set_status, status="disabled"),
    "enableConnection": partial(connections.set_status, status="active"),
    "rotateWebhookSecret": connections.rotate_secret,
    "awaitWebhookHandshake": connections.await_handshake,
    "pauseConnection": pauses.pause,
    "resumeConnection": pauses.resume,
    "createFreezeWindow": pauses.create_window,
    "listFreezeWindows": pauses.list_windows,
    "getFreezeWindow": pauses.get_window,
    "deleteFreezeWindow": pauses.delete_window,
    "setConnectionCredentials": connections.set_credentials,
    "getConnectionHealth": connections.health,
    **_record_operations(),
    "listSyncLog": synclog.list_,
    "getSyncLogSummary": synclog.summary,
    "getLedger": ledger_io.audit,
    "listAuditLog": audit_trail.list_,
    "listDeadLetters": deadletters.list_,
    "getDeadLetter": deadletters.get,
    "redriveDeadLetter": deadletters.redrive_one,
    "discardDeadLetter": deadletters.discard,
    "redriveDeadLetters": deadletters.redrive_many,
    "replayWebhooks": replay.replay,
    "createSyncJob": syncjobs.create,
    "listSyncJobs": syncjobs.list_,
    "getSyncJob": syncjobs.get,
    "cancelSyncJob": syncjobs.cancel,
    "listConflicts": conflicts.list_,
    "getConflict": conflicts.get,
    "resolveConflict": conflicts.resolve,
    "createNotificationEndpoint": notifications.create,
    "listNotificationEndpoints": notifications.list_,
    "getNotificationEndpoint": notifications.get,
    "deleteNotificationEndpoint": notifications.delete,
    "testNotificationEndpoint": notifications.send_test,
    "listNotificationDeliveries": notifications.deliveries,
    "createApiKey": apikeys.create,
    "listApiKeys": apikeys.list_,
    "getApiKey": apikeys.get,
    "revokeApiKey": apikeys.revoke,
    "rotateApiKey": apikeys.rotate,
    "exportPerson": privacy.export,
    "erasePerson": privacy.erase,
    "getQuotas": quotas.get,
    "setQuotas": quotas.replace,
    "updateQuotas": quotas.update,
    "triggerWebhook": trigger.trigger,
    "listWebhookSamples": trigger.list_samples,
}
