"""The key schema's keyed hashes: stable, secret-dependent, domain-separated,
one slot per entity, and no raw id in any key."""

from __future__ import annotations

import base64
import hmac

import pytest
from redis.crc import key_slot

from detectors.errors import ConfigError
from detectors.rules_entities import EntityType
from stream.settings import Settings
from stream.store import keys
from stream.store.keys import KeyHasher
from stream.store.slot_tags import slot_tag
from stream.store_wiring import key_hasher, open_store

SECRET = b"unit-test-key-hash-secret-0123456789"
U, D, MU = (EntityType.USER,), (EntityType.DEVICE,), (EntityType.MERCHANT, EntityType.USER)


def test_tags_are_stable_keyed_and_carry_no_raw_id() -> None:
    h = KeyHasher(SECRET)
    tag = h.tag(U, ("alice",))
    assert tag == KeyHasher(SECRET).tag(U, ("alice",))
    assert tag.startswith("{u:") and tag.endswith("}") and "alice" not in tag
    assert len(tag) == len("{u:}") + 22  # 16 bytes, unpadded base64url
    assert KeyHasher(b"another-secret-of-at-least-32-bytes!").tag(U, ("alice",)) != tag
    # The same id as another kind of entity is another entity.
    assert h.tag(D, ("alice",)) != tag.replace("{u:", "{d:")


@pytest.mark.parametrize("secret", [SECRET, b"s" * 64, b"long" * 40])
def test_the_digest_is_hmac_sha256(secret: bytes) -> None:
    """Anyone holding the secret can compute an id's key with a standard
    library (an analyst looking up one user's state)."""
    h = KeyHasher(secret)
    expected = hmac.digest(secret, b"u:alice", "sha256")[:16]
    assert h.digest("u:alice") == expected
    tag = base64.urlsafe_b64encode(expected).decode().rstrip("=")
    assert h.tag(U, ("alice",)) == "{u:" + tag + "}"


def test_compound_ids_cannot_fake_each_other() -> None:
    h = KeyHasher(SECRET)
    assert h.tag(MU, ("a|b", "c")) != h.tag(MU, ("a", "b|c"))
    assert h.tag(MU, ("m1", "u1")).startswith("{m+u:")


def test_members_are_hashed_apart_from_tags() -> None:
    h = KeyHasher(SECRET)
    assert h.member("u1") == h.member("u1") != h.member("u2")
    assert h.member("u1") not in h.tag(U, ("u1",)) and "u1" not in h.member("u1")


def test_every_key_of_an_entity_is_in_one_cluster_slot() -> None:
    tag = KeyHasher(SECRET).tag(U, ("alice",))
    names = [
        keys.aggregate("fs", tag, "abc"),
        keys.first_seen("fs", tag),
        keys.incident("fs", tag, "rule"),
    ]
    assert len({key_slot(n.encode()) for n in names}) == 1


@pytest.mark.parametrize("slot", [0, 1, 777, 16383])
def test_a_slots_guard_lies_in_that_slot(slot: int) -> None:
    assert key_slot(keys.event_guard("fs", slot_tag(slot)).encode()) == slot


def test_the_secret_is_required_long_and_never_shown() -> None:
    with pytest.raises(ValueError):
        KeyHasher(b"short")
    assert "unit-test" not in repr(KeyHasher(SECRET))
    with pytest.raises(ConfigError) as info:
        open_store(Settings())
    assert info.value.setting == "FRAUD_KEY_HASH_SECRET"
    assert key_hasher(Settings(key_hash_secret=SECRET.decode())).tag(U, ("a",))
