"""Rollups of the call ledger and monthly savings snapshots (see the metrics issue)."""
