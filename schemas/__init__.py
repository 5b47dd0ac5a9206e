"""Event envelopes, canonical records and API payloads as pydantic v2 models.

This package imports nothing else of crmsync, so any service, connector or outside tool
can depend on it alone. ``python -m schemas.export`` writes their JSON Schema to
``schemas/json/``.
"""
