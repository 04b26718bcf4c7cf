"""The scenario catalogue: every labelled scenario, its family, and what the
rules are expected to do about it (look-alikes: nothing)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from stream.simulation import scenarios_lookalike as legit
from stream.simulation import scenarios_money as money
from stream.simulation import scenarios_velocity as velocity
from stream.simulation import scenarios_voucher as voucher
from stream.simulation.labels import ExpectedAction, Family, ScenarioLabel, ScenarioName
from stream.simulation.trace import Footprint
from stream.simulation.world import World

__all__ = ["CATALOGUE", "LOOKALIKE", "NONE", "ScenarioFn", "ScenarioSpec", "run_catalogue"]

ScenarioFn = Callable[[World, random.Random, int], Footprint]


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    name: ScenarioName
    family: Family
    action: ExpectedAction
    run: ScenarioFn
    lookalike_of: ScenarioName | None = None

    @property
    def fraud(self) -> bool:
        return self.action is not ExpectedAction.NONE


_N = ScenarioName
_F = Family
_A = ExpectedAction
NONE = ExpectedAction.NONE
LOOKALIKE = Family.LOOKALIKE

CATALOGUE: tuple[ScenarioSpec, ...] = (
    ScenarioSpec(_N.CARD_TESTING_BURST, _F.VELOCITY, _A.ALERT, velocity.card_testing_burst),
    ScenarioSpec(_N.SHARED_CARD_ACCOUNTS, _F.VELOCITY, _A.ALERT, velocity.shared_card_accounts),
    ScenarioSpec(_N.BOT_IP_BURST, _F.VELOCITY, _A.ALERT, velocity.bot_ip_burst),
    ScenarioSpec(_N.DEVICE_FARM, _F.VOUCHER_ABUSE, _A.BENEFIT_FREEZE, voucher.device_farm),
    ScenarioSpec(_N.CAMPAIGN_LEAK, _F.VOUCHER_ABUSE, _A.BENEFIT_FREEZE, voucher.campaign_leak),
    ScenarioSpec(
        _N.CAMPAIGN_REPEAT_REDEEMER, _F.VOUCHER_ABUSE, _A.ALERT, voucher.campaign_repeat_redeemer
    ),
    ScenarioSpec(_N.COLLUSION_PAIR, _F.COLLUSION, _A.BENEFIT_FREEZE, voucher.collusion_pair),
    ScenarioSpec(_N.SELF_DEALING, _F.COLLUSION, _A.BENEFIT_FREEZE, voucher.self_dealing),
    ScenarioSpec(_N.DEVICE_HOPPING, _F.COLLUSION, _A.BENEFIT_FREEZE, voucher.device_hopping),
    ScenarioSpec(_N.SERIAL_REFUNDER, _F.REFUND_ABUSE, _A.ALERT, money.serial_refunder),
    ScenarioSpec(
        _N.REFUND_AFTER_SETTLEMENT, _F.REFUND_ABUSE, _A.ALERT, money.refund_after_settlement
    ),
    ScenarioSpec(_N.MERCHANT_REFUND_SPIKE, _F.REFUND_ABUSE, _A.ALERT, money.merchant_refund_spike),
    ScenarioSpec(_N.REFUND_RING, _F.REFUND_ABUSE, _A.ALERT, money.refund_ring),
    ScenarioSpec(_N.ACCOUNT_TAKEOVER, _F.PAYOUT_RISK, _A.FUND_FREEZE, money.account_takeover),
    ScenarioSpec(_N.PAYOUT_DRAIN, _F.PAYOUT_RISK, _A.FUND_FREEZE, money.payout_drain),
    ScenarioSpec(_N.BUST_OUT, _F.BUST_OUT, _A.FUND_FREEZE, money.bust_out),
    ScenarioSpec(_N.YOUNG_BUST_OUT, _F.BUST_OUT, _A.FUND_FREEZE, money.young_bust_out),
    ScenarioSpec(_N.BRUSHING, _F.BRUSHING, _A.ALERT, velocity.brushing),
    ScenarioSpec(_N.HOLIDAY_RUSH, LOOKALIKE, NONE, legit.holiday_rush, _N.BUST_OUT),
    ScenarioSpec(_N.FAMILY_TABLET, LOOKALIKE, NONE, legit.family_tablet, _N.DEVICE_FARM),
    ScenarioSpec(_N.OFFICE_LUNCH, LOOKALIKE, NONE, legit.office_lunch, _N.BRUSHING),
    ScenarioSpec(_N.REGULAR_CUSTOMER, LOOKALIKE, NONE, legit.regular_customer, _N.COLLUSION_PAIR),
    ScenarioSpec(
        _N.BANK_ACCOUNT_CHANGE, LOOKALIKE, NONE, legit.bank_account_change, _N.ACCOUNT_TAKEOVER
    ),
    ScenarioSpec(_N.CHAIN_STORES, LOOKALIKE, NONE, legit.chain_stores, _N.SELF_DEALING),
    ScenarioSpec(_N.DEAL_HUNTER, LOOKALIKE, NONE, legit.deal_hunter, _N.DEVICE_HOPPING),
    ScenarioSpec(_N.GRAND_OPENING, LOOKALIKE, NONE, legit.grand_opening, _N.YOUNG_BUST_OUT),
    ScenarioSpec(_N.CATERING_BURST, LOOKALIKE, NONE, legit.catering_burst, _N.BUST_OUT),
    ScenarioSpec(_N.HOUSEHOLD_REFUND, LOOKALIKE, NONE, legit.household_refund, _N.REFUND_RING),
    ScenarioSpec(
        _N.FIRST_WEEKLY_PAYOUT, LOOKALIKE, NONE, legit.first_weekly_payout, _N.ACCOUNT_TAKEOVER
    ),
)


def run_catalogue(world: World) -> list[ScenarioLabel]:
    """Inject `world.cfg.instances` instances of every scenario; each instance
    draws from its own random stream, so instances are independent."""
    labels = []
    for spec in CATALOGUE:
        for instance in range(1, world.cfg.instances + 1):
            rng = world.cfg.rng(f"scenario/{spec.name.value}/{instance}")
            footprint = spec.run(world, rng, instance)
            labels.append(
                ScenarioLabel(
                    scenario_id=f"{spec.name.value}-{instance}",
                    scenario=spec.name,
                    family=spec.family,
                    fraud=spec.fraud,
                    expected_action=spec.action,
                    entities=footprint.entities,
                    expect_on=footprint.expect_on,
                    start_ms=footprint.start_ms,
                    end_ms=footprint.end_ms,
                    description=footprint.description,
                    lookalike_of=spec.lookalike_of,
                )
            )
    return labels
