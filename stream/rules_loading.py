"""Settings → the rule book (shared by worker, backtest, replay and `rules check`)."""

from __future__ import annotations

from importlib import resources

from detectors.errors import ConfigError
from detectors.rulebook import Rulebook, parse_rulebook
from stream.settings import Settings

__all__ = ["DEFAULT_RULES", "load_rulebook", "read_rules_text"]

DEFAULT_RULES = "default.yaml"


def read_rules_text(settings: Settings) -> tuple[str, str]:
    """(text, source name) of the configured rule file, or of the built-in default."""
    if settings.rules_file is None:
        text = resources.files("stream.rulesets").joinpath(DEFAULT_RULES).read_text("utf-8")
        return text, f"(built-in) {DEFAULT_RULES}"
    try:
        return settings.rules_file.read_text(encoding="utf-8"), str(settings.rules_file)
    except OSError as exc:
        raise ConfigError("FRAUD_RULES_FILE", f"cannot read {settings.rules_file}: {exc}") from None


def load_rulebook(settings: Settings) -> Rulebook:
    """Raises RulebookError listing every mistake: a worker never starts on a bad file."""
    text, source = read_rules_text(settings)
    return parse_rulebook(text, source)
