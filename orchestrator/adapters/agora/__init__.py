"""agora adapters."""
