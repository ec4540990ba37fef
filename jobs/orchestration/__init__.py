"""Runs of many stages: the stage table, the full and nightly runs, ledger, run lock, config drift, incremental updates."""
