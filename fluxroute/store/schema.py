"""The store's schema version, shared by every database dialect.

Each backend keeps its own migrations (SQL differs between dialects), one list per dialect, and version n means
the same tables, columns, constraints and derived totals in every dialect. A change to the schema lands in every
dialect at once, under one new version. SQLite's list (database.MIGRATIONS) has SCHEMA_VERSION entries; PostgreSQL
joined at version 7, so a new PostgreSQL database gets version 7's whole schema in one step (postgres.BASELINE) and
its list (postgres.MIGRATIONS) holds one entry per version after that.
"""

from __future__ import annotations

# 1 jobs, attempts, ledger · 2 reservations held by attempts · 3 running ledger totals · 4 learned offer latency
# · 5 attempt leases (owner + expiry) · 6 draft sets and image lineage · 7 lineage relation varied_from
SCHEMA_VERSION = 7
