"""Benchmarks: how fast fraudstream runs here, next to what plain Python and
faust alone can do on the same machine. Run from the repository
(`python -m bench ...`); never installed with fraudstream, never in its image."""
