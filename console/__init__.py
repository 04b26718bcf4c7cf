"""The risk-ops console: a separate process that indexes the workers'
outputs (`risk-alerts`, both freeze topics) and the control plane
(`risk-control`) into PostgreSQL, for the pages analysts work in.

It reads `detectors` for the contracts and `stream` for the settings and
Kafka wiring; neither of them imports it.
"""
