"""The developer's machine: local Kafka and Redis without Docker, their
installers, and the demo. Run from the repository (`python -m devenv ...`);
never installed with fraudstream, never in its image."""
