"""Pure domain: the call state machine as data and functions (no I/O, no asyncio)."""
