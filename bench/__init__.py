"""`orchestrator bench`: what users feel and how close the worker is to the machine's limit.

Entry point: `bench.runner.run(settings)`, called by `orchestrator.bench_entry.run_bench`.
"""
