"""simkit.json_object, which every simulator's write endpoints read their body by: a body
that is not JSON, or JSON that is not an object, is refused with the answer the
simulator's provider gives, made only when it is given."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from connectors.simkit import json_object
from tests.integration.connectors.served import served


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (b'{"name": "Harbour"}', 200, '{"name": "Harbour"}'),
        (b"name=Harbour", 400, "not JSON"),
        (b'["Harbour"]', 422, "not an object"),
    ],
    ids=["object", "not-json", "not-object"],
)
async def test_a_body_is_read_as_a_json_object_or_refused_in_the_providers_words(
    body: bytes, status: int, text: str
) -> None:
    made: list[str] = []

    def refusal(cls: type[web.HTTPException], why: str) -> web.HTTPException:
        made.append(why)
        return cls(text=why)

    async def write(request: web.Request) -> web.Response:
        obj = await json_object(
            request,
            not_json=lambda: refusal(web.HTTPBadRequest, "not JSON"),
            not_object=lambda: refusal(web.HTTPUnprocessableEntity, "not an object"),
        )
        return web.json_response(obj)

    app = web.Application()
    app.router.add_post("/write", write)
    async with (
        served(app) as url,
        aiohttp.ClientSession() as session,
        session.post(f"{url}/write", data=body) as answer,
    ):
        assert answer.status == status
        assert await answer.text() == text
    # The refusal is made only when it is the answer (a provider's may read its clock).
    assert made == ([] if status == 200 else [text])
