"""The rule files shipped with fraudstream (package data: `default.yaml`)."""

__all__: list[str] = []
