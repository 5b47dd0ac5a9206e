"""What every provider simulator shares: an in-memory store, signed webhook delivery,
rate limiting, fault injection, OAuth2 tokens and a control API for tests and the demo.

A simulator is a real HTTP server speaking one provider's API shape. Each provider's
``connectors/<slug>/simulator.py`` subclasses Simulator: it adds its API routes (which
call ``create``/``update``/``delete`` on the store so every change, by API or by "user",
fires a webhook exactly as the real provider would, including echoes of our own writes)
and builds the provider's webhook bodies and signature headers.

Control routes, all under ``/_sim`` (no auth, never rate limited or faulted):

- ``GET  /_sim/records/{entity}``         every stored object in provider shape, deleted too
- ``POST /_sim/records/{entity}``         create as a user in the provider's UI would
- ``PATCH /_sim/records/{entity}/{id}``   edit as a user (merges the given provider fields)
- ``DELETE /_sim/records/{entity}/{id}``  delete as a user
- ``POST /_sim/faults``                   ``{"status": 500, "count": 3, "retry_after": 2}``:
  the next ``count`` API requests answer ``status`` (429 sends Retry-After); with
  ``"after": true`` each is carried out first and only its answer is the fault (a
  write the provider made whose answer was lost)
- ``POST /_sim/webhooks/drop``            ``{"count": 1}``: the next webhooks are not sent
- ``POST /_sim/oauth``                    ``{"fail_refresh": true, "access_ttl": 60}``
- ``POST /_sim/seed``                     ``{"count": 100}``: realistic records, no webhooks
- ``GET  /_sim/log``                      API requests seen and webhooks sent (for tests)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from connectors.spec import EntityType, RateLimit

log = logging.getLogger(__name__)

# A real provider retries failed deliveries for hours; a simulator gives up sooner so a
# stopped ingest does not keep the event loop busy, but still rides out a restart.
WEBHOOK_ATTEMPTS = 8
WEBHOOK_FIRST_BACKOFF_SECONDS = 0.2
WEBHOOK_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Change:
    """One change the simulator announces by webhook."""

    entity_type: EntityType
    record_id: str
    op: str  # "create" | "update" | "delete"
    at: datetime
    seq: int
    # The record as it was when the change was made, for a provider whose events carry
    # that (``Simulator.snapshot``); None: the event is built from the record as it is
    # when it is delivered.
    snapshot: dict[str, Any] | None = None


@dataclass
class Fault:
    status: int
    count: int
    retry_after: float | None = None
    # Only requests whose path ends with this fail (None: any): the later step of a
    # write made of several calls (a Stripe invoice's finalize after its create).
    path: str | None = None
    # Only requests of this method fail (None: any): the POST of a path also read.
    method: str | None = None
    # The request is carried out (a write recorded, its webhook sent) and only then
    # answered with ``status``: the provider acted, its answer was lost on the way.
    after: bool = False


@dataclass
class SimLog:
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))
    webhooks: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))


class TokenBucket:
    """The simulator's own view of the provider's published limit (not our client's)."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self.tokens = float(limit.burst)
        self.at = clock()

    def take(self) -> float:
        """0 when a request may go now, else the seconds until one may."""
        now = self.clock()
        self.tokens = min(
            float(self.limit.burst), self.tokens + (now - self.at) * self.limit.per_second
        )
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.limit.per_second


# The seeded customers of the payment simulators (Square, Shopify, PayPal): made-up names.
_SEED_FIRST = ("Ava", "Ben", "Chloe", "Dev", "Emma", "Finn")
_SEED_LAST = ("Nguyen", "Smith", "Wong", "Patel", "Brown", "Walker")


@dataclass(frozen=True)
class SeedPerson:
    """The ``index``-th seeded customer of a payment simulator."""

    first: str
    last: str  # numbered, so no two seeded customers are the same person
    email: str


def seed_person(index: int) -> SeedPerson:
    first, last = _SEED_FIRST[index % len(_SEED_FIRST)], _SEED_LAST[index % len(_SEED_LAST)]
    email = f"{first}.{last}.{index + 1}@example.com".lower()
    return SeedPerson(first, f"{last} {index + 1}", email)


async def json_object(
    request: web.Request,
    *,
    not_json: Callable[[], Exception],
    not_object: Callable[[], Exception],
) -> dict[str, Any]:
    """The request's body, a JSON object; else what ``not_json()`` or ``not_object()``
    makes is raised (each simulator's provider refuses these in its own words; made only
    when raised, as an answer may read the simulator's clock)."""
    try:
        body = await request.json()
    except ValueError:
        raise not_json() from None
    if not isinstance(body, dict):
        raise not_object()
    return body


def utcnow() -> datetime:
    return datetime.now(UTC)


class Simulator:
    """Base of every provider simulator; see the module docstring for the control API.

    Subclasses set ``provider`` and ``entity_types``, and implement ``add_api_routes``,
    ``new_object`` (a stored object from a create body), ``apply_edit`` (an object after
    an update body), ``webhook_requests`` (bodies + headers for some changes) and
    ``seed_object``. Objects are plain dicts in the provider's own shape.
    """

    provider: str = ""
    entity_types: tuple[EntityType, ...] = ()
    # API paths that need no Authorization (token endpoint, health).
    public_paths: tuple[str, ...] = ("/oauth/token",)

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        rate_limit: RateLimit | None = None,
        api_token: str = "sim-token",  # noqa: S107 - a simulator's fixed test credential
        oauth_client: tuple[str, str] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.webhook_url = webhook_url
        # The URL the provider's subscription names, which a provider that signs its URL
        # (Square, HubSpot) signs: ingest's public URL for the connection. None: the URL
        # webhooks are posted to (they differ behind a proxy, or where a test's ingest
        # verifies against a public base URL it does not listen on).
        self.signed_url: str | None = None
        # Where the simulator is reached (set by whoever started it): a provider whose
        # webhooks name one of its own URLs (PayPal's certificate) needs it.
        self.public_url: str | None = None
        self.webhook_secret = webhook_secret
        self.bucket = TokenBucket(rate_limit) if rate_limit else None
        self.api_token = api_token
        self.oauth_client = oauth_client
        self.clock = clock
        self.store: dict[EntityType, dict[str, dict[str, Any]]] = {e: {} for e in self.entity_types}
        self.deleted: dict[EntityType, set[str]] = {e: set() for e in self.entity_types}
        self.faults: deque[Fault] = deque()
        self.drop_webhooks = 0
        self.log = SimLog()
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        # OAuth2: access token -> expiry (unix s); refresh token -> still valid.
        self.access_tokens: dict[str, float] = {}
        self.refresh_tokens: set[str] = set()
        self.access_ttl = 1800.0
        self.fail_refresh = False
        self.refresh_calls = 0
        self._outbox: asyncio.Queue[list[Change]] = asyncio.Queue()
        # Webhooks announced and not yet delivered or given up on.
        self.webhooks_pending = 0
        self._sender: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- to implement per provider ----------------------------------------------------------

    def add_api_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def new_object(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def apply_edit(
        self, entity_type: EntityType, obj: dict[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def webhook_requests(self, changes: list[Change]) -> list[tuple[bytes, dict[str, str]]]:
        """Signed (body, headers) pairs to POST for these changes (one or several)."""
        raise NotImplementedError

    def seed_object(self, entity_type: EntityType, index: int) -> dict[str, Any]:
        """A create body for the ``index``-th seeded record (realistic, deterministic)."""
        raise NotImplementedError

    def new_id(self, entity_type: EntityType) -> str:
        return f"{entity_type[:3]}_{next(self._ids):06d}"

    # --- the store: every change goes through here ------------------------------------------

    def create(
        self, entity_type: EntityType, body: Mapping[str, Any], *, notify: bool = True
    ) -> dict[str, Any]:
        record_id = self.new_id(entity_type)
        obj = self.new_object(entity_type, record_id, body)
        self.store[entity_type][record_id] = obj
        if notify:
            self._announce(entity_type, record_id, "create")
        if entity_type == "payment":
            self.payment_recorded(obj, notify=notify)
        return obj

    def payment_recorded(self, payment: Mapping[str, Any], *, notify: bool) -> None:
        """A payment was just created (and announced when ``notify``): a provider that
        keeps an invoice's balance or status brings the invoice it pays up to date."""

    def update(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        obj = self.get(entity_type, record_id)
        obj = self.apply_edit(entity_type, obj, body)
        self.store[entity_type][record_id] = obj
        self._announce(entity_type, record_id, "update")
        return obj

    def delete(self, entity_type: EntityType, record_id: str) -> None:
        self.get(entity_type, record_id)
        self.deleted[entity_type].add(record_id)
        self._announce(entity_type, record_id, "delete")

    def deleter(self, entity_type: EntityType) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A ``DELETE .../{id}`` handler: the record goes, the answer is 204."""

        async def delete(request: web.Request) -> web.Response:
            self.delete(entity_type, request.match_info["id"])
            return web.Response(status=204)

        return delete

    def get(self, entity_type: EntityType, record_id: str) -> dict[str, Any]:
        obj = self.store.get(entity_type, {}).get(record_id)
        if obj is None or record_id in self.deleted.get(entity_type, set()):
            raise web.HTTPNotFound(
                text=f'{{"error": "no {entity_type} {record_id}"}}',
                content_type="application/json",
            )
        return obj

    def live(self, entity_type: EntityType) -> list[dict[str, Any]]:
        gone = self.deleted[entity_type]
        return [o for i, o in self.store[entity_type].items() if i not in gone]

    def seed(self, count: int) -> None:
        """``count`` records of each entity type, without webhooks (they existed before)."""
        for entity_type in self.entity_types:
            for index in range(count):
                self.create(entity_type, self.seed_object(entity_type, index), notify=False)

    # --- webhooks ----------------------------------------------------------------------------

    def _announce(self, entity_type: EntityType, record_id: str, op: str) -> None:
        if self.webhook_url is None:
            return
        if self.drop_webhooks > 0:
            self.drop_webhooks -= 1
            self.log.webhooks.append(
                {"entity_type": entity_type, "id": record_id, "op": op, "dropped": True}
            )
            return
        change = Change(
            entity_type,
            record_id,
            op,
            self.clock(),
            next(self._seq),
            self.snapshot(entity_type, record_id),
        )
        self.webhooks_pending += 1
        self._outbox.put_nowait([change])

    def snapshot(self, entity_type: EntityType, record_id: str) -> dict[str, Any] | None:
        """What a change's event carries of its record as it was when made (None: the
        record as it is at delivery). A provider that snapshots overrides it."""
        return None

    async def _send_webhooks(self) -> None:
        assert self._session is not None  # noqa: S101 - started with the app
        while True:
            changes = await self._outbox.get()
            try:
                for body, headers in self.webhook_requests(changes):
                    await self._deliver(body, headers, changes)
            except Exception:
                log.exception("%s simulator could not deliver a webhook", self.provider)
            finally:
                self.webhooks_pending -= 1
                self._outbox.task_done()

    async def _deliver(self, body: bytes, headers: dict[str, str], changes: list[Change]) -> None:
        assert self._session is not None  # noqa: S101 - started with the app
        assert self.webhook_url is not None  # noqa: S101 - checked by _announce
        delay = WEBHOOK_FIRST_BACKOFF_SECONDS
        status: int | None = None
        for _ in range(WEBHOOK_ATTEMPTS):
            try:
                async with self._session.post(
                    self.webhook_url,
                    data=body,
                    headers={"Content-Type": "application/json", **headers},
                    timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_SECONDS),
                ) as response:
                    status = response.status
                    if response.status < 300:
                        break
            except (aiohttp.ClientError, TimeoutError):
                status = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        self.log.webhooks.append(
            {
                "changes": [(c.entity_type, c.record_id, c.op) for c in changes],
                "status": status,
            }
        )

    # --- OAuth2 token endpoint (providers whose API_SPEC.auth_kind is oauth2) ------------------

    def issue_tokens(self) -> dict[str, Any]:
        access = "at_" + secrets.token_urlsafe(16)
        refresh = "rt_" + secrets.token_urlsafe(16)
        self.access_tokens[access] = time.time() + self.access_ttl
        self.refresh_tokens.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": int(self.access_ttl),
            "token_type": "Bearer",
        }

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.refresh_calls += 1
        refresh = str(form.get("refresh_token", ""))
        if (
            self.fail_refresh
            or form.get("grant_type") != "refresh_token"
            or refresh not in self.refresh_tokens
            or (
                self.oauth_client
                and (form.get("client_id"), form.get("client_secret")) != self.oauth_client
            )
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        self.refresh_tokens.discard(refresh)  # rotated, as Xero does
        return web.json_response(self.issue_tokens())

    def authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        if token == self.api_token:
            return True
        expiry = self.access_tokens.get(token)
        return expiry is not None and expiry > time.time()

    # --- the app -------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_sim"):
            return await handler(request)  # type: ignore[no-any-return]
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "at": time.time(),
        }
        self.log.requests.append(entry)
        fault = next(
            (
                f
                for f in self.faults
                if (f.path is None or request.path.endswith(f.path))
                and f.method in (None, request.method)
            ),
            None,
        )
        if fault is not None:
            fault.count -= 1
            if fault.count <= 0:
                self.faults.remove(fault)
            entry["status"] = fault.status
            if fault.after and (request.path in self.public_paths or self.authorised(request)):
                with contextlib.suppress(web.HTTPException):
                    await handler(request)
            headers = (
                {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            )
            return web.json_response(
                {"error": "injected fault"}, status=fault.status, headers=headers
            )
        if self.bucket is not None:
            wait = self.bucket.take()
            if wait > 0:
                entry["status"] = 429
                return web.json_response(
                    {"error": "rate limit exceeded"},
                    status=429,
                    headers={"Retry-After": str(max(1, round(wait)))},
                )
        if request.path not in self.public_paths and not self.authorised(request):
            entry["status"] = 401
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            entry["status"] = exc.status
            raise
        entry["status"] = response.status
        return response

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/_sim/records/{entity}", self._ctl_list)
        app.router.add_post("/_sim/records/{entity}", self._ctl_create)
        app.router.add_patch("/_sim/records/{entity}/{id}", self._ctl_update)
        app.router.add_delete("/_sim/records/{entity}/{id}", self._ctl_delete)
        app.router.add_post("/_sim/faults", self._ctl_faults)
        app.router.add_post("/_sim/webhooks/drop", self._ctl_drop)
        app.router.add_post("/_sim/oauth", self._ctl_oauth)
        app.router.add_post("/_sim/seed", self._ctl_seed)
        app.router.add_get("/_sim/log", self._ctl_log)
        app.router.add_post("/oauth/token", self._token)
        self.add_api_routes(app)
        app.cleanup_ctx.append(self._webhook_sender)
        return app

    async def _webhook_sender(self, _app: web.Application) -> Any:
        self._session = aiohttp.ClientSession()
        self._sender = asyncio.create_task(self._send_webhooks(), name=f"{self.provider}-webhooks")
        yield
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender
        await self._session.close()

    async def drained(self) -> None:
        """Wait until every announced change was delivered or given up on (tests)."""
        await self._outbox.join()

    def _entity(self, request: web.Request) -> EntityType:
        entity = request.match_info["entity"]
        if entity not in self.entity_types:
            raise web.HTTPNotFound(text=f"{self.provider} simulates {', '.join(self.entity_types)}")
        return entity

    async def _ctl_list(self, request: web.Request) -> web.Response:
        entity = self._entity(request)
        gone = self.deleted[entity]
        return web.json_response(
            [{**o, "_deleted": i in gone} for i, o in self.store[entity].items()]
        )

    async def _ctl_create(self, request: web.Request) -> web.Response:
        return web.json_response(
            self.create(self._entity(request), await request.json()), status=201
        )

    async def _ctl_update(self, request: web.Request) -> web.Response:
        entity = self._entity(request)
        return web.json_response(
            self.update(entity, request.match_info["id"], await request.json())
        )

    async def _ctl_delete(self, request: web.Request) -> web.Response:
        self.delete(self._entity(request), request.match_info["id"])
        return web.Response(status=204)

    async def _ctl_faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.faults.append(
            Fault(
                int(body["status"]),
                int(body.get("count", 1)),
                body.get("retry_after"),
                after=bool(body.get("after", False)),
            )
        )
        return web.json_response({"queued": len(self.faults)})

    async def _ctl_drop(self, request: web.Request) -> web.Response:
        self.drop_webhooks += int((await request.json()).get("count", 1))
        return web.json_response({"drop": self.drop_webhooks})

    async def _ctl_oauth(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.fail_refresh = bool(body.get("fail_refresh", self.fail_refresh))
        self.access_ttl = float(body.get("access_ttl", self.access_ttl))
        if body.get("issue"):
            return web.json_response(self.issue_tokens())
        return web.json_response({"refresh_calls": self.refresh_calls})

    async def _ctl_seed(self, request: web.Request) -> web.Response:
        self.seed(int((await request.json()).get("count", 10)))
        return web.json_response({e: len(self.store[e]) for e in self.entity_types})

    async def _ctl_log(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"requests": list(self.log.requests), "webhooks": list(self.log.webhooks)}
        )
