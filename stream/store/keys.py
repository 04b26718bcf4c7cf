"""The Redis key schema, in one place.

Every key of one entity shares the hash tag `{<codes>:<h>}`, so one atomic
script per entity works on Redis Cluster (no CROSSSLOT). Compound entities
(merchant x user) get their own tag. The namespace prefix sits outside the
tag: a backtest's scratch namespace uses the same slots and can be removed
with one SCAN pattern.

    <ns>:{u:<h>}:a:<agg_id>         HASH  bucketed count: n = newest bucket,
                                          t = window total, <bucket> = value;
                                          r<i> = a counted event "<seq>|<ms>|<event id>"
                                          (a ring of FRAUD_COUNTED_EVENTS), p = the
                                          newest's sequence number
    <ns>:{u:<h>}:a:<agg_id>:<CUR>   HASH  the same for a sum (money), one key per
                                          ISO 4217 currency: amounts in different
                                          currencies are never added
                                    ZSET  distinct: member=<h> of the value, score=last event ms
    <ns>:{u:<h>}:first              HASH  <agg_id> = first event ms seen; `~` = the TTL's
                                          last refresh (event ms // refresh slice)
    <ns>:{o:<h>}:first:<ms>         HASH  the same, for sightings kept only <ms> (`retain`)
    <ns>:{u:<h>}:inc:<rule_id>      HASH  recent incidents of a rule (see claim_incidents.lua)
    <ns>:store-epoch                STRING random id set once; its loss means Redis lost state
    <ns>:key-layout                 STRING layout version and secret fingerprint of the state
    <ns>:frontiers:<group>          HASH  how far each input partition of a group is complete
    <ns>:{freezes}:<part>           published freezes until released (see freeze_book)
    <ns>:{gr:<rule_id>}:...         the rule's freeze budget counts (freeze_budget.lua)
    <ns>:{brk}:...                  the circuit breaker's counts (breaker.lua)
    <ns>:delivered:<group>          ZSET  member=<topic>:<partition>, score=the offset up to
                                          which its records' outputs are delivered
    <ns>:{g<i>}:events              ZSET  duplicate guard of one slot (standalone: one):
                                          member=event digest, score=event ms
    <ns>:{m:<h>}:paid:orders        ZSET  a merchant's orders: member=<h> of the order id,
                                          score=order ms (see payout_book.lua)
    <ns>:{m:<h>}:paid:payouts       ZSET  a merchant's payouts: member=<h> of the payout id,
                                          score=payout ms
    <ns>:{m:<h>}:health             HASH  a merchant's health ledger, its last snapshot's
                                          header, its band history
    <ns>:{m:<h>}:health:last        STR   a merchant's last health snapshot, whole
    <ns>:{health}:owners            HASH  violation id → merchant id
    <ns>:{health}:bands             HASH  band → merchants in it

**No raw identifier in a Redis key or set member** (user, device,
payment and payout fingerprints, IP addresses, and, for one rule that is easy to audit, every
other entity id too: merchants, campaigns, vouchers, orders). `<h>` is a
keyed hash: HMAC-SHA256 under `FRAUD_KEY_HASH_SECRET`, truncated to
HASH_BYTES and written in unpadded base64url (22 characters). A keyed hash,
not a plain one: ids such as IPv4 addresses or 10-digit user numbers are few
enough to enumerate, so an unkeyed digest could be reversed by anyone who
reads the keys. Members of distinct counts (e.g. the accounts paying with
one card) are hashed the same way, in their own domain; counting is
unchanged, since equal values give equal hashes. Duplicate-guard members are
digests of event ids, which name no person; a count's ring of counted
events holds event ids as values, for the same reason.

Collisions: 128 bits. Two of n different ids share a hash with probability
about n^2 / 2^129: for 10^10 entities ever, ~1.5e-19. A collision would merge
two entities' counters (or two distinct values), never split one.

Alerts and freezes are built from the events, not from keys, so they carry
the raw ids analysts need. A few places in Redis still hold them: an open
incident keeps its alert's payload (a hash value) so that a redelivered
trigger republishes it byte for byte; it expires with the incident. And an
active freeze keeps its subject id (a hash value, see `freeze_book`) so
that its release can be keyed like it; it goes when the freeze is released.
A merchant's health ledger (`merchant_health`, `health_owners`) holds the
merchant id in its values, as the snapshot it publishes does.
Changing the secret orphans every key (state is rebuilt with
`fraudstream replay --since <time>`).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
from collections.abc import Callable

from detectors.rules_entities import EntityType

__all__ = [
    "ENTITY_CODE",
    "FIRST_SEEN_SUFFIX",
    "FREEZE_BOOK_PARTS",
    "HASH_BYTES",
    "KEY_LAYOUT",
    "MIN_SECRET_BYTES",
    "KeyHasher",
    "aggregate",
    "aggregate_suffix",
    "breaker",
    "delivered",
    "entity_prefix",
    "epoch",
    "event_guard",
    "first_seen",
    "first_seen_suffix",
    "freeze_book",
    "freeze_budget",
    "frontiers",
    "guard_generation",
    "health_bands",
    "health_owners",
    "incident",
    "key_layout",
    "merchant_health",
    "merchant_health_last",
    "merchant_orders",
    "merchant_payouts",
    "namespace_pattern",
    "partition_member",
]

HASH_BYTES = 16
# The version of the key names and their hashing: bumped when either changes.
KEY_LAYOUT = 2
MIN_SECRET_BYTES = 32
# Cached hashes: merchants, campaigns and busy users recur across batches.
_CACHE_SIZE = 1 << 16
_BLOCK = 64  # SHA-256's block size, the HMAC pad length
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_URLSAFE = bytes.maketrans(b"+/", b"-_")

ENTITY_CODE: dict[EntityType, str] = {
    EntityType.USER: "u",
    EntityType.MERCHANT: "m",
    EntityType.DEVICE: "d",
    EntityType.PAYMENT: "p",
    EntityType.IP: "ip",
    EntityType.VOUCHER: "v",
    EntityType.CAMPAIGN: "c",
    EntityType.ORDER: "o",
}


@functools.cache
def _codes(entity: tuple[EntityType, ...]) -> str:
    return "+".join(ENTITY_CODE[e] for e in entity)


class KeyHasher:
    """Keyed hashes of the ids and values that name entities in Redis. The
    secret never leaves this object (its repr masks it)."""

    __slots__ = ("_inner", "_outer", "member", "tag")

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the key hash secret needs at least {MIN_SECRET_BYTES} bytes")
        # HMAC-SHA256 (RFC 2104) with both padded keys hashed once: copying
        # the two states per hash costs 0.9 µs, `hmac.digest` 2.1 µs here.
        key = secret if len(secret) <= _BLOCK else hashlib.sha256(secret).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))
        self.tag: Callable[[tuple[EntityType, ...], tuple[str, ...]], str] = functools.lru_cache(
            _CACHE_SIZE
        )(self._tag)
        self.member: Callable[[str], str] = functools.lru_cache(_CACHE_SIZE)(self._member)

    def __repr__(self) -> str:
        return "KeyHasher(***)"

    def fingerprint(self) -> str:
        """Identifies the secret without revealing it (a keyed hash of a
        constant), so a worker can tell state written under another secret."""
        return self.digest("fraudstream key layout fingerprint").hex()

    def digest(self, text: str) -> bytes:
        """HMAC-SHA256 of `text` under the secret, truncated to HASH_BYTES."""
        inner = self._inner.copy()
        inner.update(text.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:HASH_BYTES]

    def _digest(self, text: str) -> str:
        encoded = binascii.b2a_base64(self.digest(text), newline=False)
        return encoded[:22].translate(_URLSAFE).decode()  # base64url, no padding

    def _tag(self, entity: tuple[EntityType, ...], ids: tuple[str, ...]) -> str:
        """`{u:<h>}`. The hashed text starts with the entity codes, so a user
        and a device with the same id get different hashes; compound ids are
        length-prefixed so no id can fake another."""
        codes = _codes(entity)
        body = ids[0] if len(ids) == 1 else "|".join(f"{len(i)}.{i}" for i in ids)
        return f"{{{codes}:{self._digest(codes + ':' + body)}}}"

    def _member(self, value: str) -> str:
        """A distinct count's member. `=` never starts an entity code, so a
        member's hash cannot equal a tag's."""
        return self._digest("=" + value)


def entity_prefix(ns: str, tag: str) -> str:
    """What every key of one entity starts with; the store builds keys as
    prefix + suffix, once per entity and batch rather than per op."""
    return f"{ns}:{tag}"


FIRST_SEEN_SUFFIX = ":first"


def first_seen_suffix(retain_ms: int | None) -> str:
    """Sightings kept for the default time share `:first`; a shorter `retain`
    gets its own key, because a key has one TTL."""
    return FIRST_SEEN_SUFFIX if retain_ms is None else f"{FIRST_SEEN_SUFFIX}:{retain_ms}"


def aggregate_suffix(agg_id: str, currency: str | None = None) -> str:
    """A sum's state is one key per currency (`currency`, validated as
    [A-Z]{3} by the contract); other aggregates pass None."""
    return f":a:{agg_id}" if currency is None else f":a:{agg_id}:{currency}"


def aggregate(ns: str, tag: str, agg_id: str, currency: str | None = None) -> str:
    return entity_prefix(ns, tag) + aggregate_suffix(agg_id, currency)


def first_seen(ns: str, tag: str) -> str:
    return entity_prefix(ns, tag) + FIRST_SEEN_SUFFIX


def incident(ns: str, tag: str, rule_id: str) -> str:
    return f"{ns}:{tag}:inc:{rule_id}"


def key_layout(ns: str) -> str:
    """`<KEY_LAYOUT>:<secret fingerprint>` of the state in a namespace: a
    worker with another secret or layout refuses it (stream.errors.StoreLayoutMismatch)."""
    return f"{ns}:key-layout"


def epoch(ns: str) -> str:
    """Sentinel written when a namespace starts holding state: if it vanishes,
    Redis lost its data (restart without persistence, flush, failover)."""
    return f"{ns}:store-epoch"


def frontiers(ns: str, group: str) -> str:
    """HASH `<topic>:<partition>` = `<event ms>:<written at ms>:<stalled 0|1>`,
    written by the partition's owner (stream.frontier_exchange). Topic names
    and partitions only: no personal data."""
    return f"{ns}:frontiers:{group}"


def namespace_pattern(ns: str) -> str:
    """SCAN pattern matching every key of a namespace."""
    return f"{ns}:*"


FREEZE_BOOK_PARTS = ("info", "expiry", "releases", "leases", "done", "refused")


def freeze_book(ns: str) -> list[str]:
    """The keys of the active-freeze book, in FREEZE_BOOK_PARTS order, all
    under one hash tag so one script updates them together on a cluster
    (freezes are few: one slot holds them). Members are freeze ids (digests);
    `info` values hold the freeze's subject id, raw, because its release must
    be keyed and addressed by it; they go when the freeze is released.

        info      HASH  freeze id → the active freeze (ActiveFreeze JSON)
        expiry    ZSET  freeze id → expires_at ms, while neither released nor claimed
        releases  HASH  freeze id → its release (ReleaseSpec JSON), claimed or done
        leases    ZSET  freeze id → ms until which a worker's claim holds
        done      ZSET  freeze id → ms it was released (trimmed after the retention)
        refused   ZSET  `<freeze id> <control id>` → ms a release command was first
                        refused (so one worker, once, counts and logs it)
    """
    return [f"{ns}:{{freezes}}:{part}" for part in FREEZE_BOOK_PARTS]


def freeze_budget(ns: str, rule_id: str) -> str:
    """The prefix of one rule's freeze budget keys (a hash tag of their own,
    one slot per rule). Rule ids are letters, digits, '_' and '-'; the
    subjects counted under it are keyed hashes (KeyHasher.member)."""
    return f"{ns}:{{gr:{rule_id}}}"


def breaker(ns: str) -> str:
    """The prefix of the circuit breaker's keys (one slot): freeze ids (digests),
    hashed merchants and per-currency totals, no raw id."""
    return f"{ns}:{{brk}}"


def guard_generation(control_id: str) -> str:
    """A control record id as a short key part (ids may be 128 characters)."""
    return hashlib.blake2b(control_id.encode(), digest_size=8).hexdigest()


def delivered(ns: str, group: str) -> str:
    """The delivered watermarks of a consumer group's input partitions
    (stream.delivery): one key, so reading or advancing any number of them
    is one call on a cluster too. Topic names and offsets only."""
    return f"{ns}:delivered:{group}"


def partition_member(topic: str, partition: int) -> str:
    """An input partition's member in `delivered`."""
    return f"{topic}:{partition}"


def event_guard(ns: str, slot_tag: str) -> str:
    """ZSET member=event digest, score=event ms: the duplicate guard of every
    event applied to the keys of one slot (stream.store.slot_tags), so one
    check per event and script call instead of one per entity. Digests of
    event ids only."""
    return f"{ns}:{slot_tag}:events"


def merchant_orders(ns: str, tag: str) -> str:
    """The merchant's order times (detectors.paid_out); `tag` is its `{m:<h>}`."""
    return f"{ns}:{tag}:paid:orders"


def merchant_payouts(ns: str, tag: str) -> str:
    return f"{ns}:{tag}:paid:payouts"


def merchant_health(ns: str, tag: str) -> str:
    """HASH of one merchant's health ledger, under the merchant's own tag
    (`{m:<h>}`, the slot of its aggregates): `v:<violation id>` = the
    violation (JSON), `last` = the last published snapshot's header. Both
    values hold the raw merchant id, as the published snapshot does: the
    CLI and a re-scored snapshot must name the merchant."""
    return f"{ns}:{tag}:health"


def merchant_health_last(ns: str, tag: str) -> str:
    """STRING: a merchant's last published health snapshot whole (header,
    records), beside its ledger; the ledger's `last` field holds the header
    alone, so a batch reads a line per merchant, not its records."""
    return f"{ns}:{tag}:health:last"


def health_owners(ns: str) -> str:
    """HASH violation id → merchant id (raw, as in `merchant_health`): which
    ledger a released freeze's violation is in. Violations are few (one per
    standing freeze): one slot holds them."""
    return f"{ns}:{{health}}:owners"


def health_bands(ns: str) -> str:
    """HASH band → merchants whose last health snapshot is in it, moved by
    each published band change (every worker's): the metric of merchants
    per band. Band names only."""
    return f"{ns}:{{health}}:bands"
