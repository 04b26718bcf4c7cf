"""The I/O shell of fraudstream: Faust app and agents, codecs, the Redis store,
sinks, metrics, settings and the command line."""

__all__: list[str] = []
