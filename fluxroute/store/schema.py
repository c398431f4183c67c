"""The store's schema version, shared by every database dialect.

Each backend keeps its own migrations (SQL differs between dialects), one list per dialect, and version n means
the same tables, columns, constraints and derived totals in every dialect. A dialect's list must have exactly
SCHEMA_VERSION entries: a change to the schema lands in every dialect at once, under one new version.
"""

from __future__ import annotations

# 1 jobs, attempts, ledger · 2 reservations held by attempts · 3 running ledger totals · 4 learned offer latency
# · 5 attempt leases (owner + expiry) · 6 draft sets and image lineage · 7 lineage relation varied_from
SCHEMA_VERSION = 7
