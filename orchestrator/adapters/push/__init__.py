"""push adapters."""
