"""The simulator's vocabulary: its configuration, the population's frozen
records, and random-looking ids.

Everything random flows from `SimulationConfig.rng(stream)`: one independent
generator per named stream, seeded from the run's seed, so a run is the same
bytes every time and adding a scenario does not reshuffle the background.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from detectors.timestamps import parse_rfc3339_ms

__all__ = [
    "CURRENCY",
    "DAY_MS",
    "DEFAULT_START_MS",
    "HOME_IP_OCTETS",
    "HOUR_MS",
    "MAX_BASKET_MINOR",
    "MINUTE_MS",
    "MIN_BASKET_MINOR",
    "MIN_DAYS",
    "MOBILE_IP_OCTETS",
    "SECOND_MS",
    "Buyer",
    "Campaign",
    "IdKind",
    "IdMint",
    "Merchant",
    "SimulationConfig",
    "User",
]

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
CURRENCY = "EUR"
DEFAULT_START_MS = parse_rfc3339_ms("2026-11-01T00:00:00Z")
MIN_DAYS = 2
MIN_BASKET_MINOR = 800
MAX_BASKET_MINOR = 6000


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """What determines a run: the same values give the same bytes."""

    seed: int = 1
    scale: float = 1.0
    start_ms: int = DEFAULT_START_MS
    days: int = 8
    merchants: int = 0  # merchants per health archetype (stream.simulation.merchant_quality)

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if self.days < MIN_DAYS:
            raise ValueError(f"days must be at least {MIN_DAYS}, got {self.days}")
        if self.start_ms % DAY_MS:
            # Payouts run at 03:00 UTC and meals follow the UTC clock: a day is a UTC day.
            raise ValueError("start must be midnight UTC")

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY_MS

    def day_start(self, day: int) -> int:
        return self.start_ms + day * DAY_MS

    def day_of(self, at_ms: int) -> int:
        return (at_ms - self.start_ms) // DAY_MS

    def at(self, day: int, hour: float) -> int:
        """Epoch ms of `hour` (fractional hours allowed) on simulation day `day`."""
        return self.day_start(day) + round(hour * HOUR_MS)

    def scaled(self, base: int) -> int:
        return max(1, round(base * self.scale))

    @property
    def instances(self) -> int:
        """How many instances of each labelled scenario: the scale, at least one."""
        return max(1, round(self.scale))

    def rng(self, stream: str) -> random.Random:
        # A str seed is hashed with SHA-512 by `random`: stable across processes.
        return random.Random(f"fraudstream-sim/{self.seed}/{stream}")


class IdKind(StrEnum):
    """Id prefixes. Buyer bank accounts and payout destinations share `iban:`
    on purpose: a merchant's own account can turn up as a buyer's instrument."""

    USER = "u_"
    MERCHANT = "m_"
    DEVICE = "dev_"
    CARD = "card:"
    BANK = "iban:"
    CAMPAIGN = "cmp_"
    VOUCHER = "vch_"
    ORDER = "ord_"
    REFUND = "rf_"
    REDEMPTION = "rdm_"
    PAYOUT = "po_"
    EVENT = "evt_"


_HEX_DIGITS: dict[IdKind, int] = {
    IdKind.USER: 10,
    IdKind.MERCHANT: 8,
    IdKind.DEVICE: 12,
    IdKind.CARD: 16,
    IdKind.BANK: 16,
    IdKind.CAMPAIGN: 6,
    IdKind.EVENT: 16,
}
HOME_IP_OCTETS = (31, 37, 46, 62, 77, 78, 79, 80, 81, 84, 85, 87, 88, 89, 91, 92, 93, 95)
MOBILE_IP_OCTETS = (5, 109, 176, 178, 188)


class IdMint:
    """Random-looking, unique ids. Sequential ids would let anyone reading the
    file pick out a scenario's injected events as one contiguous run."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._used: set[str] = set()

    def new(self, kind: IdKind) -> str:
        digits = _HEX_DIGITS.get(kind, 12)
        while True:
            candidate = f"{kind.value}{self._rng.getrandbits(4 * digits):0{digits}x}"
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate

    def ip(self, first_octets: Sequence[int] = HOME_IP_OCTETS) -> str:
        rng = self._rng
        while True:
            candidate = (
                f"{rng.choice(first_octets)}.{rng.randrange(256)}."
                f"{rng.randrange(256)}.{rng.randrange(1, 255)}"
            )
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate


@dataclass(frozen=True, slots=True)
class Merchant:
    merchant_id: str
    price_minor: int  # the typical basket; each order varies around it
    city: str

    def basket(self, rng: random.Random) -> int:
        amount = round(rng.gauss(self.price_minor, self.price_minor * 0.3))
        return min(MAX_BASKET_MINOR, max(MIN_BASKET_MINOR, amount))


@dataclass(frozen=True, slots=True)
class Campaign:
    campaign_id: str
    face_value_minor: int
    subsidy_minor: int  # what the platform pays per redemption
    weight: float  # relative popularity among campaigns


@dataclass(frozen=True, slots=True)
class Buyer:
    """Who places one order, and from where: device, IP, payment instrument."""

    user_id: str
    device_id: str
    ip: str
    payment: str


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    devices: tuple[str, ...]
    payment: str
    home_ip: str
    joined_day: int  # 0: active before the simulation started
    weekly_orders: float = 0.0  # background ordering rate; 0 for scenario-driven users
    favourites: tuple[Merchant, ...] = ()

    def at_home(self) -> Buyer:
        return Buyer(self.user_id, self.devices[0], self.home_ip, self.payment)

    def buyer(self, rng: random.Random, mobile_ips: Sequence[str]) -> Buyer:
        """Mostly the main device at home; sometimes the second device, or a
        carrier IP shared with many strangers (mobile data)."""
        device = self.devices[-1] if len(self.devices) > 1 and rng.random() < 0.3 else None
        ip = rng.choice(mobile_ips) if mobile_ips and rng.random() < 0.25 else self.home_ip
        return Buyer(self.user_id, device or self.devices[0], ip, self.payment)
