"""What `fraudstream control rules publish FILE` checks and shows before it
publishes (stream.control_cli does the publishing): the `ruleset` record
for a file, built with the checks of `fraudstream rules check`, and which
rules it adds, removes and changes compared with the rule set in effect.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from detectors.control import Provenance, Ruleset
from detectors.rulebook import Rulebook, parse_rulebook
from detectors.rules import Rule

__all__ = ["RulesDiff", "build_ruleset", "diff_rules"]


@dataclass(frozen=True, slots=True)
class RulesDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[tuple[str, tuple[str, ...]], ...]  # rule id, the fields that differ

    def lines(self) -> list[str]:
        out = [f"  + {rule_id}" for rule_id in self.added]
        out += [f"  - {rule_id}" for rule_id in self.removed]
        out += [f"  ~ {rule_id} ({', '.join(fields)})" for rule_id, fields in self.changed]
        return out or ["  no rule added, removed or changed"]


def _differing(old: Rule, new: Rule) -> tuple[str, ...]:
    return tuple(
        f.name for f in dataclasses.fields(Rule) if getattr(old, f.name) != getattr(new, f.name)
    )


def diff_rules(old: Rulebook, new: Rulebook) -> RulesDiff:
    """Rules compared as parsed (defaults applied), so a change of `defaults:`
    shows on every rule it changes, and a reformatted file shows nothing."""
    before = {r.rule_id: r for r in old.rules}
    after = {r.rule_id: r for r in new.rules}
    changed = [(i, _differing(before[i], r)) for i, r in after.items() if i in before]
    return RulesDiff(
        added=tuple(i for i in after if i not in before),
        removed=tuple(i for i in before if i not in after),
        changed=tuple((i, fields) for i, fields in changed if fields),
    )


def build_ruleset(text: str, source: str, meta: Provenance) -> Ruleset:
    """RulebookError listing every mistake, as `rules check` would."""
    return Ruleset(text, parse_rulebook(text, source), meta)
