"""The vocabulary of releases shared by the control record (detectors.control)
and the freeze topics' release record (detectors.releases). A leaf module:
the control records are read by the rule language (list conditions), which
the release record's module depends on, so the two cannot import each other."""

from __future__ import annotations

import re
from enum import StrEnum

__all__ = ["FREEZE_ID_PATTERN", "REASON_CODE_PATTERN", "ReleaseType"]


class ReleaseType(StrEnum):
    """Why a freeze ended (a metric label). `expired` is the workers' own, on
    the freeze topics only: a control record cannot claim it."""

    MANUAL = "manual"
    APPEAL_UPHELD = "appeal_upheld"
    FALSE_POSITIVE = "false_positive"
    RULE_ROLLBACK = "rule_rollback"
    BREAKER_REVERSAL = "breaker_reversal"
    EXPIRED = "expired"


FREEZE_ID_PATTERN = re.compile(r"fz_[0-9a-f]{32}")
# Reason codes are risk ops' own taxonomy (it grows without a contract
# change), kept machine-groupable: lowercase, no spaces.
REASON_CODE_PATTERN = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
