"""mqtt adapters."""
