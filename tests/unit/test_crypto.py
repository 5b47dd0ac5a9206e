from __future__ import annotations

import pytest

from crmsync.common.crypto import (
    CryptoError,
    KeyRing,
    generate_master_key,
    hash_api_key,
    new_api_key,
)


def test_round_trip_and_ciphertext_reveals_nothing() -> None:
    ring = KeyRing.parse(generate_master_key("k1"))
    sealed = ring.encrypt("whsec_supersecret", "webhook-secret:c1")
    assert "supersecret" not in sealed
    assert sealed.startswith("enc:v1:k1:")
    assert ring.decrypt(sealed, "webhook-secret:c1") == "whsec_supersecret"
    assert ring.encrypt("same", "ctx") != ring.encrypt("same", "ctx")  # fresh nonce each time


def test_ciphertext_moved_to_another_context_does_not_decrypt() -> None:
    ring = KeyRing.parse(generate_master_key())
    sealed = ring.encrypt("s", "webhook-secret:c1")
    with pytest.raises(CryptoError, match="another context"):
        ring.decrypt(sealed, "webhook-secret:c2")


def test_tampered_ciphertext_does_not_decrypt() -> None:
    ring = KeyRing.parse(generate_master_key())
    sealed = ring.encrypt("secret", "ctx")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(CryptoError):
        ring.decrypt(flipped, "ctx")


def test_rotation_new_key_encrypts_old_key_still_decrypts() -> None:
    old = generate_master_key("k1")
    before = KeyRing.parse(old).encrypt("secret", "ctx")
    rotated = KeyRing.parse(f"{generate_master_key('k2')},{old}")
    assert rotated.decrypt(before, "ctx") == "secret"
    assert rotated.encrypt("secret", "ctx").startswith("enc:v1:k2:")
    with pytest.raises(CryptoError, match="k1 is not in CRMSYNC_MASTER_KEYS"):
        KeyRing.parse(generate_master_key("k2")).decrypt(before, "ctx")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no master key"),
        ("nokid", "kid:base64key"),
        ("k1:!!!", "not valid base64"),
        ("k1:c2hvcnQ", "32 bytes"),
    ],
)
def test_bad_key_ring_is_refused_without_echoing_key_material(spec: str, message: str) -> None:
    with pytest.raises(CryptoError, match=message) as err:
        KeyRing.parse(spec)
    assert "c2hvcnQ" not in str(err.value)


def test_duplicate_key_id_is_refused() -> None:
    with pytest.raises(CryptoError, match="appears twice"):
        KeyRing.parse(f"{generate_master_key('k1')},{generate_master_key('k1')}")


def test_api_keys_are_random_and_stored_as_a_hash() -> None:
    a, b = new_api_key(), new_api_key()
    assert a != b
    assert a.startswith("csk_")
    assert len(a) > 40
    assert hash_api_key(a) == hash_api_key(a) != hash_api_key(b)
    assert a not in hash_api_key(a)
