"""The alert id of an incident, computed independently of the store.

Each store numbers incidents and writes their ids itself (Redis in
stream/store/lua/claim_incidents.lua, the in-memory store in Python); tests
use this independent copy to check the ids a store wrote.
"""

from __future__ import annotations

import hashlib


def incident_alert_id(base: str, epoch: int, seq: int) -> str:
    """The n-th incident (seq, from 1) of a (rule, entity) pair in a 90-day epoch.

    Numbering incidents instead of hashing the event or window that tipped
    them keeps ids equal between a live run and a replay even when events
    interleave differently."""
    return "al_" + hashlib.sha1(f"{base}:{epoch}:{seq}".encode()).hexdigest()[:32]
