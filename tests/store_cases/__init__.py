"""Test bodies shared by both store backends: each module's `*Cases` class is
subclassed once under tests/unit (the in-memory store, no service) and once
under tests/integration (Redis); the `stores` fixture follows the directory."""
