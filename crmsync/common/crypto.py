"""Secrets at rest: AES-256-GCM with a key id, so master keys rotate; API keys hashed.

Ciphertext format (text, safe in any column): ``enc:v1:<key id>:<base64url(nonce|ct|tag)>``.
The key id names the master key that sealed it, so old rows stay readable after a new key
becomes active, and ``crmsync`` can re-encrypt them at leisure. Every value is bound to
its context (e.g. the connection id) as associated data: a ciphertext copied onto another
row does not decrypt.

Master keys come from ``CRMSYNC_MASTER_KEYS``: ``kid:base64key[,kid:base64key...]``,
the first one encrypts, all of them decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.errors import Stop

_PREFIX = "enc:v1:"
# 96-bit nonces are GCM's native size (NIST SP 800-38D); random ones are safe far beyond
# the number of secrets one deployment will ever seal with one key.
_NONCE_BYTES = 12
_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
API_KEY_PREFIX = "csk_"


class CryptoError(Stop):
    """A key ring or a ciphertext is unusable; the message never contains key material."""


def _b64decode(text: str) -> bytes:
    """Strict base64, URL-safe or standard alphabet, padding optional."""
    padded = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
    return base64.b64decode(padded, validate=True)


@dataclass(frozen=True)
class KeyRing:
    active_id: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for item in filter(None, (p.strip() for p in spec.split(","))):
            kid, sep, b64 = item.partition(":")
            if not sep or not _KID.match(kid):
                raise CryptoError("each master key must be written kid:base64key")
            try:
                key = _b64decode(b64.strip())
            except (binascii.Error, ValueError):
                raise CryptoError(f"master key {kid} is not valid base64") from None
            if len(key) != 32:
                raise CryptoError(f"master key {kid} must be 32 bytes (AES-256), got {len(key)}")
            if kid in keys:
                raise CryptoError(f"master key id {kid} appears twice")
            keys[kid] = key
            order.append(kid)
        if not order:
            raise CryptoError("no master key given")
        return cls(order[0], keys)

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.keys[self.active_id]).encrypt(
            nonce, plaintext.encode(), context.encode()
        )
        token = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_PREFIX}{self.active_id}:{token}"

    def decrypt(self, ciphertext: str, context: str) -> str:
        if not ciphertext.startswith(_PREFIX):
            raise CryptoError("not a crmsync ciphertext")
        kid, _, token = ciphertext[len(_PREFIX) :].partition(":")
        key = self.keys.get(kid)
        if key is None:
            raise CryptoError(f"master key {kid} is not in CRMSYNC_MASTER_KEYS")
        try:
            raw = _b64decode(token)
            plain = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        except (binascii.Error, ValueError, InvalidTag):
            raise CryptoError(
                "ciphertext does not decrypt (tampered, or another context)"
            ) from None
        return plain.decode()


def generate_master_key(kid: str = "k1") -> str:
    """A new key-ring entry, ``kid:base64key``, for CRMSYNC_MASTER_KEYS."""
    return f"{kid}:{base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip('=')}"


def new_api_key() -> str:
    """A bearer token with 256 bits of entropy; shown once, stored only as its hash."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # A fast hash suffices: the key is random with 256 bits of entropy, so there is no
    # dictionary to attack, and lookups by hash stay one index probe.
    return hashlib.sha256(key.encode()).hexdigest()
