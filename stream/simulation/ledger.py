"""Every generated event, and the running facts generators must respect.

Events are the validated dataclasses of `detectors.events`, so the simulator
speaks the same types as the rule engine and cannot drift from the contract.
Next to them the ledger keeps what later steps need: each merchant's net
earnings per day (payouts pay them), payout destinations over time, who used
which campaign on which day (one voucher per campaign per day in normal
traffic) and how many refunds each user has had.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from detectors.events import (
    Event,
    Order,
    Payout,
    Refund,
    RefundInitiator,
    Topic,
    VoucherRedemption,
)
from stream.simulation.model import (
    CURRENCY,
    MINUTE_MS,
    SECOND_MS,
    Buyer,
    Campaign,
    IdKind,
    IdMint,
    Merchant,
    SimulationConfig,
)

__all__ = ["PAYOUT_HOUR", "Ledger", "Voucher"]

PAYOUT_HOUR = 3  # settlement pays yesterday's earnings at ~03:00 UTC


@dataclass(frozen=True, slots=True)
class Voucher:
    """A voucher applied to one order: its campaign and its code."""

    campaign: Campaign
    voucher_id: str


class Ledger:
    def __init__(self, cfg: SimulationConfig, ids: IdMint) -> None:
        self.cfg = cfg
        self.ids = ids
        self.events: list[tuple[Topic, Event]] = []
        self._net: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self._destinations: dict[str, list[tuple[int, str]]] = {}
        self._vouchers_used: set[tuple[str, str, int]] = set()
        self._refunds: Counter[str] = Counter()
        self._paid_weekly: set[str] = set()  # merchants settled once a week, not daily

    def order(
        self,
        rng: random.Random,
        buyer: Buyer,
        merchant: Merchant,
        at_ms: int,
        amount_minor: int,
        voucher: Voucher | None = None,
    ) -> Order:
        """An order, and with a voucher its redemption a few seconds later."""
        order = Order(
            event_id=self.ids.new(IdKind.EVENT),
            occurred_at_ms=at_ms,
            order_id=self.ids.new(IdKind.ORDER),
            user_id=buyer.user_id,
            merchant_id=merchant.merchant_id,
            amount_minor=amount_minor,
            currency=CURRENCY,
            device_id=buyer.device_id,
            ip=buyer.ip,
            payment_fingerprint=buyer.payment,
            voucher_id=voucher.voucher_id if voucher else None,
            city=merchant.city,
        )
        self._add(Topic.ORDERS, order)
        self._net[merchant.merchant_id][self.cfg.day_of(at_ms)] += amount_minor
        if voucher is not None:
            self._redeem(order, voucher, at_ms + rng.randrange(2 * SECOND_MS, 20 * SECOND_MS))
        return order

    def _redeem(self, order: Order, voucher: Voucher, at_ms: int) -> None:
        campaign = voucher.campaign
        self._add(
            Topic.VOUCHER_REDEMPTIONS,
            VoucherRedemption(
                event_id=self.ids.new(IdKind.EVENT),
                occurred_at_ms=at_ms,
                redemption_id=self.ids.new(IdKind.REDEMPTION),
                voucher_id=voucher.voucher_id,
                user_id=order.user_id,
                merchant_id=order.merchant_id,
                face_value_minor=campaign.face_value_minor,
                subsidy_minor=campaign.subsidy_minor,
                currency=CURRENCY,
                campaign_id=campaign.campaign_id,
                order_id=order.order_id,
                device_id=order.device_id,
            ),
        )
        self._vouchers_used.add((order.user_id, campaign.campaign_id, self.cfg.day_of(at_ms)))

    def refund(
        self,
        order: Order,
        at_ms: int,
        initiated_by: RefundInitiator,
        amount_minor: int | None = None,
        reason: str | None = None,
    ) -> Refund:
        amount = (
            order.amount_minor if amount_minor is None else min(amount_minor, order.amount_minor)
        )
        refund = Refund(
            event_id=self.ids.new(IdKind.EVENT),
            occurred_at_ms=at_ms,
            refund_id=self.ids.new(IdKind.REFUND),
            order_id=order.order_id,
            user_id=order.user_id,
            merchant_id=order.merchant_id,
            amount_minor=amount,
            currency=CURRENCY,
            reason=reason,
            initiated_by=initiated_by,
        )
        self._add(Topic.REFUNDS, refund)
        self._net[order.merchant_id][self.cfg.day_of(at_ms)] -= amount
        self._refunds[order.user_id] += 1
        return refund

    def payout(self, merchant_id: str, at_ms: int, amount_minor: int, destination: str) -> Payout:
        payout = Payout(
            event_id=self.ids.new(IdKind.EVENT),
            occurred_at_ms=at_ms,
            payout_id=self.ids.new(IdKind.PAYOUT),
            merchant_id=merchant_id,
            amount_minor=amount_minor,
            currency=CURRENCY,
            destination_fingerprint=destination,
        )
        self._add(Topic.PAYOUTS, payout)
        return payout

    def _add(self, topic: Topic, event: Event) -> None:
        if not self.cfg.start_ms <= event.occurred_at_ms < self.cfg.end_ms:
            raise ValueError(f"{topic.value} event at {event.occurred_at_ms} is outside the run")
        self.events.append((topic, event))

    def set_destination(self, merchant_id: str, from_day: int, fingerprint: str) -> None:
        """Pay `merchant_id` to `fingerprint` from `from_day` on (first call: from day 0)."""
        self._destinations.setdefault(merchant_id, []).append((from_day, fingerprint))

    def destination(self, merchant_id: str, day: int) -> str:
        current = ""
        for from_day, fingerprint in self._destinations[merchant_id]:
            if from_day <= day:
                current = fingerprint
        return current

    def net_earned(self, merchant_id: str, day: int) -> int:
        """Orders minus refunds of `merchant_id` on simulation day `day`."""
        return self._net[merchant_id][day]

    def voucher_used(self, user_id: str, campaign_id: str, day: int) -> bool:
        return (user_id, campaign_id, day) in self._vouchers_used

    def refund_count(self, user_id: str) -> int:
        return self._refunds[user_id]

    def settle_weekly(self, merchant_id: str) -> None:
        """`merchant_id` is paid by its own scenario, not by `pay_daily`."""
        self._paid_weekly.add(merchant_id)

    def pay_daily(self, rng: random.Random) -> list[Payout]:
        """Every merchant's daily payout: at ~03:00, yesterday's net earnings to
        the destination of the day, nothing when the net is not positive."""
        out = []
        for merchant_id in self._destinations:
            if merchant_id in self._paid_weekly:
                continue
            for day in range(1, self.cfg.days):
                net = self.net_earned(merchant_id, day - 1)
                if net <= 0:
                    continue
                at = self.cfg.at(day, PAYOUT_HOUR) + rng.randrange(20 * MINUTE_MS)
                destination = self.destination(merchant_id, day)
                out.append(self.payout(merchant_id, at, net, destination))
        return out

    def count_by_topic(self) -> dict[Topic, int]:
        counts = Counter(topic for topic, _ in self.events)
        return {topic: counts[topic] for topic in Topic}
