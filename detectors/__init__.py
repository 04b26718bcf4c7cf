"""The pure core of fraudstream: event models, the wire contract, window
arithmetic, rule specs and decisions.

Nothing in this package performs I/O or reads a clock: time is always an
argument. That keeps every decision reproducible in a backtest and testable
without Kafka or Redis.
"""
