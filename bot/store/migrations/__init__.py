"""Alembic migrations of the store's schema.

HEAD is the newest revision id. The store compares it with the database's `alembic_version` row at every start and
imports Alembic only when they differ, so a start against an up-to-date schema costs one query. Adding a revision
means moving HEAD to it; tests/test_store_defaults.py checks HEAD against Alembic's own view of the scripts.
"""

HEAD = "0003"
