"""The envelope ingest writes to ``webhooks.raw`` for every verified webhook."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field, field_validator

from schemas.base import AwareDatetime, Event


class WebhookEnvelope(Event):
    """A provider's webhook exactly as received, after its signature verified.

    The body is kept byte for byte: the processor parses it, and a fixed mapping can
    re-read it on replay.
    """

    tenant_id: UUID
    connection_id: UUID
    provider: str = Field(min_length=1, max_length=64, description="Provider slug.")
    provider_event_id: str | None = Field(
        None, max_length=512, description="The provider's own event id, the dedup key."
    )
    received_at: AwareDatetime
    content_type: str | None = Field(None, max_length=256, description="Request Content-Type.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers kept for processing (content type, event type); never secrets.",
    )
    body: bytes = Field(description="Raw request body (base64 in JSON).")

    @field_validator("headers")
    @classmethod
    def _utf8_text(cls, headers: dict[str, str]) -> dict[str, str]:
        # Servers decode header bytes with surrogateescape, and what is not UTF-8 cannot be
        # written as JSON to the topic. Unsigned headers (Shopify's webhook id and topic)
        # are whatever a replayer sends: refused here, not a 500 when serialising.
        for name, value in headers.items():
            try:
                value.encode()
            except UnicodeEncodeError:
                raise ValueError(f"{name} is not UTF-8 text") from None
        return headers
