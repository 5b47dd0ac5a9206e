"""Simulated Ascora instances in a process of their own (not the load generator's, not
the services'): ``python -m bench.sims PORTS_FILE COUNT [SEED_CUSTOMERS]``.

Writes ``{"ports": [...]}`` to PORTS_FILE once every simulator listens, then serves
until SIGTERM.
The first simulator is seeded with SEED_CUSTOMERS customers (no webhooks: they existed
before the connection). No simulator sends webhooks: the load generator plays the
source CRM, and echoes of our own pushes would double the load under test.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.ascora.mapping import ID_FIELDS
from connectors.ascora.simulator import MAX_PAGE_SIZE, AscoraSimulator
from connectors.spec import EntityType

COMPANY_CODE = "DEMO"
API_TOKEN = "sim-token"  # noqa: S105 - the simulator's fixed test credential


class IndexedAscora(AscoraSimulator):
    """Lists full pages from a sorted index kept between requests, as a provider's
    database would. The stock simulator sorts every record on every page request, which
    at 100,000 records (1,000 pages) would measure the simulator, not the backfill."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._index: dict[EntityType, list[dict[str, Any]]] = {}

    def create(
        self, entity_type: EntityType, body: Mapping[str, Any], *, notify: bool = True
    ) -> dict[str, Any]:
        self._index.clear()
        return super().create(entity_type, body, notify=notify)

    def update(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        self._index.clear()
        return super().update(entity_type, record_id, body)

    def delete(self, entity_type: EntityType, record_id: str) -> None:
        self._index.clear()
        super().delete(entity_type, record_id)

    def _lister(self, entity_type: EntityType) -> Callable[[web.Request], Any]:
        stock = super()._lister(entity_type)
        id_field = ID_FIELDS[entity_type]

        async def handler(request: web.Request) -> web.StreamResponse:
            query = request.query
            try:
                page = int(query.get("page", "1"))
                size = int(query.get("pageSize", "50"))
            except ValueError:
                page = size = 0
            if "modifiedSince" in query or page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
                return await stock(request)  # type: ignore[no-any-return]
            records = self._index.get(entity_type)
            if records is None:
                records = sorted(
                    self.live(entity_type), key=lambda o: (o["lastModified"], o[id_field])
                )
                self._index[entity_type] = records
            total_pages = max(1, -(-len(records) // size))
            items = records[(page - 1) * size : page * size]
            return web.json_response(
                {"items": items, "page": page, "pageSize": size, "totalPages": total_pages}
            )

        return handler


async def serve(ports_file: Path, count: int, seed: int) -> None:
    runners: list[web.AppRunner] = []
    ports: list[int] = []
    for n in range(count):
        sim = IndexedAscora(company_code=COMPANY_CODE, api_token=API_TOKEN)
        if n == 0:
            for i in range(seed):
                sim.create("customer", sim.seed_object("customer", i), notify=False)
        runner = web.AppRunner(sim.app(), access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        ports.append(int(runner.addresses[0][1]))
    written = ports_file.with_suffix(".tmp")
    written.write_text(json.dumps({"ports": ports}))
    written.rename(ports_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for runner in runners:
        await runner.cleanup()


def main() -> None:
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    asyncio.run(serve(Path(sys.argv[1]), int(sys.argv[2]), seed))


if __name__ == "__main__":
    main()
