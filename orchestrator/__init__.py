"""Call orchestrator: server-owned state machine, timers and exactly-once pushes for 1:1 calls."""

__version__ = "0.1.0"
