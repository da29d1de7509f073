"""Test doubles: in-memory store, push provider, event source, publisher and a manual clock."""
