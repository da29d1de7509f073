"""realtime adapters."""
