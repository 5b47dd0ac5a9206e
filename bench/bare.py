"""The baseline server: a bare aiohttp handler that reads the body and answers 200.

``python -m bench.bare PORT``. Same framework, same keep-alive, no access log (ingest has
none either); no signature check, no Kafka: the ceiling ingest is compared against.
"""

from __future__ import annotations

import sys

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"status": "accepted"})


def main() -> None:
    app = web.Application()
    app.router.add_post("/{tail:.*}", accept)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


async def ready(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


if __name__ == "__main__":
    main()
