"""Documents a webhook names and its verification needs (PayPal's signing certificate),
fetched through the provider egress rules and cached.

A certificate URL arrives in an unauthenticated request, so the fetch is held to the same
rules as any provider call (connectors.egress: public addresses only unless the operator
allows more, no redirects, a size cap), and its answer is cached so a flood of deliveries
naming one URL costs one fetch. Failures are not cached: a refused URL is refused again
cheaply by the egress check, and a transient failure should be retried.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

import aiohttp
from yarl import URL

from connectors.base import DocumentRefusedError, DocumentUnavailableError
from connectors.egress import EgressRefusedError

# A PEM chain of three certificates is about 6 KiB; 64 KiB is far above any real one.
MAX_DOCUMENT_BYTES = 64 * 1024
# PayPal rotates its signing certificate yearly and names each at a new URL; a day keeps
# one fetch per URL per day, and a revoked-and-replaced document is reread within it.
CACHE_SECONDS = 24 * 3600.0
# Distinct URLs kept: PayPal uses one or two at a time (live and sandbox).
MAX_ENTRIES = 32
# A document fetch happens inside a webhook request that must be answered within
# seconds (PayPal waits about 30 s); 5 s leaves room for the rest.
FETCH_TIMEOUT_SECONDS = 5.0


class CachedDocuments:
    """connectors.base.DocumentFetcher over a provider session (connectors.egress)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        allow_private: bool,
        trust_anchors_pem: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
        ttl_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._session = session
        self.allow_private = allow_private
        self.trust_anchors_pem = trust_anchors_pem
        self._clock = clock
        self._ttl = ttl_seconds
        self._cache: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        self.fetches = 0

    async def get(self, url: str) -> bytes:
        cached = self._cache.get(url)
        if cached is not None and self._clock() - cached[0] < self._ttl:
            self._cache.move_to_end(url)
            return cached[1]
        inflight = self._inflight.get(url)
        if inflight is None:
            inflight = asyncio.ensure_future(self._fetch(url))
            self._inflight[url] = inflight
            inflight.add_done_callback(lambda _f: self._inflight.pop(url, None))
        return await asyncio.shield(inflight)

    async def _fetch(self, url: str) -> bytes:
        self.fetches += 1
        label = f"GET {URL(url).path}" if url else "GET"
        try:
            async with self._session.get(
                url,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS),
            ) as response:
                if 300 <= response.status < 400:
                    raise DocumentRefusedError(f"{label} answered a redirect; not followed")
                if response.status >= 500:
                    raise DocumentUnavailableError(f"{label} answered {response.status}")
                if response.status >= 400:
                    raise DocumentRefusedError(f"{label} answered {response.status}")
                body = await self._read(response, label)
        except EgressRefusedError as exc:
            raise DocumentRefusedError(f"{label}: refused: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, EgressRefusedError):
                raise DocumentRefusedError(f"{label}: refused: {exc.os_error}") from None
            raise DocumentUnavailableError(f"{label}: {type(exc).__name__}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DocumentUnavailableError(f"{label}: {type(exc).__name__}") from None
        self._cache[url] = (self._clock(), body)
        self._cache.move_to_end(url)
        while len(self._cache) > MAX_ENTRIES:
            self._cache.popitem(last=False)
        return body

    @staticmethod
    async def _read(response: aiohttp.ClientResponse, label: str) -> bytes:
        declared = response.content_length
        if declared is not None and declared > MAX_DOCUMENT_BYTES:
            raise DocumentRefusedError(f"{label}: larger than {MAX_DOCUMENT_BYTES} bytes")
        body = bytearray()
        async for chunk in response.content.iter_any():
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise DocumentRefusedError(f"{label}: larger than {MAX_DOCUMENT_BYTES} bytes")
        return bytes(body)
