"""Adapters: the ports implemented against real services (and in memory, for unit tests)."""
