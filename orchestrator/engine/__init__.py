"""The worker's core: wake-ups, durable timers, pickups and push delivery, via ports only."""
