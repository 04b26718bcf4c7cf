"""Rule files (YAML) → validated Rule specs, or every mistake with its location.

Risk analysts edit these files, so a mistake must be reported precisely
(path and line) and all at once, and a worker must refuse to start on a bad
file rather than run with half a policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from detectors.aggregates import AggregateSpec
from detectors.errors import ConfigError, FraudstreamError
from detectors.health_model import HealthModel, parse_health_model
from detectors.health_rates import health_aggregates
from detectors.metric_kinds import REGISTRY
from detectors.rule_parsing import metric_keywords, parse_rule
from detectors.rule_syntax import Invalid, Parser, RuleError
from detectors.rules import Evaluator, Rule
from detectors.ruleset_digest import CanonicalFormError, ruleset_digest

__all__ = ["RuleError", "Rulebook", "RulebookError", "parse_rulebook"]


class RulebookError(FraudstreamError):
    """A rule file is invalid; `errors` lists every problem found."""

    def __init__(self, source: str, errors: list[RuleError]) -> None:
        self.source = source
        self.errors = errors
        listing = "\n".join(f"  {e}" for e in errors)
        super().__init__(f"{source}: {len(errors)} error(s)\n{listing}")


@dataclass(frozen=True, slots=True)
class Rulebook:
    name: str
    version: str  # the file's own `ruleset_version:` label, as written
    rules: tuple[Rule, ...]
    # The `ruleset_version` decisions carry: the SHA-256 of the canonical
    # document (detectors.ruleset_digest), set by parse_rulebook.
    digest: str = ""
    # The merchant-health model (the file's `health` section); None: no
    # merchant-health scores, and none of their aggregates, are kept.
    health: HealthModel | None = None

    def aggregates(self) -> tuple[AggregateSpec, ...]:
        seen: dict[str, AggregateSpec] = {}
        for rule in self.rules:
            for agg in rule.aggregates():
                seen.setdefault(agg.agg_id, agg)
        return tuple(seen.values())


def _line_map(node: yaml.Node, path: str, out: dict[str, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _line_map(value, f"{path}.{key.value}" if path else str(key.value), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, f"{path}[{i}]", out)


def parse_rulebook(
    text: str, source: str = "<rules>", kinds: Mapping[str, Evaluator] = REGISTRY
) -> Rulebook:
    """Parse and validate a rule file; raises RulebookError listing every
    mistake. `kinds`: the metric kinds rules may use (see
    detectors.metric_kinds)."""
    node, doc = _load(text, source)
    lines: dict[str, int] = {}
    if node is not None:
        _line_map(node, "", lines)
    p = Parser(lines)
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise RulebookError(
            source, [RuleError("rules", "the file needs a top-level `rules:` list")]
        )
    unknown = {str(k) for k in doc} - {
        "ruleset", "ruleset_version", "defaults", "rules", "health",
    }  # fmt: skip
    if unknown:
        p.fail("<top>", f"unknown key(s): {', '.join(sorted(unknown))}")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - {"mode", "cooldown", "severity"}:
        p.fail("defaults", "may only set mode, cooldown and severity")
        defaults = {}
    rules = _rules(p, doc["rules"], defaults, metric_keywords(kinds))
    health = _health(p, doc.get("health"))
    if "health" not in doc:
        _no_bands_without_health(p, doc["rules"])
    if p.errors:
        raise RulebookError(source, p.errors)
    if not rules:
        raise RulebookError(source, [RuleError("rules", "no rules defined")])
    try:
        digest = ruleset_digest(doc)
    except CanonicalFormError as exc:
        raise RulebookError(
            source, [RuleError(exc.path, exc.message, lines.get(exc.path))]
        ) from None
    name, label = str(doc.get("ruleset", "rules")), str(doc.get("ruleset_version", "0"))
    return Rulebook(name, label, tuple(rules), digest, health)


def _no_bands_without_health(p: Parser, raws: list[Any]) -> None:
    """A rule gated on a health band in a file that scores no health would
    never fire: a mistake, not a silent rule."""
    for i, raw in enumerate(raws):
        requires = raw.get("requires") if isinstance(raw, dict) else None
        items = [requires] if isinstance(requires, dict) else requires
        if not isinstance(items, list):
            continue
        if any(isinstance(r, dict) and "health_band" in r for r in items):
            p.fail(f"rules[{i}].requires", "reads a health band: the file needs a `health` section")


def _health(p: Parser, raw: Any) -> HealthModel | None:
    """The `health` section (detectors.health_model), over the default model."""
    if raw is None:
        return None
    try:
        model = parse_health_model(raw)
        health_aggregates(model)  # every window must split into buckets
    except ConfigError as exc:
        p.fail(exc.setting, exc.message)
        return None
    except ValueError as exc:
        p.fail("health", str(exc))
        return None
    return model


def _load(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The YAML document and its node tree (for line numbers)."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            doc = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise RulebookError(source, [RuleError("<yaml>", f"not valid YAML: {exc}", line)]) from None
    return node, doc


def _rules(
    p: Parser, raws: list[Any], defaults: dict[str, Any], keywords: Mapping[str, Evaluator]
) -> list[Rule]:
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raws):
        try:
            rule = parse_rule(p, raw, f"rules[{i}]", defaults, keywords)
        except Invalid:
            continue
        if rule.rule_id in seen:
            p.fail(
                f"rules[{i}].id",
                f"duplicate rule id {rule.rule_id!r} (also rules[{seen[rule.rule_id]}])",
            )
            continue
        seen[rule.rule_id] = i
        rules.append(rule)
    return rules
