"""The one way this project opens an SQLite database (the ledger, the label index)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: str | Path, schema: str) -> sqlite3.Connection:
    """Open (creating) a database in WAL mode with `schema` applied.

    WAL lets `campaign status` read while a run writes. `synchronous=NORMAL` in WAL mode
    survives a killed process (every commit is in the WAL file); only a power cut can lose
    the last commits, and what they recorded is found on disk and verified by the next run.
    Autocommit (`isolation_level=None`): callers group writes with explicit transactions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    database = sqlite3.connect(path, timeout=60, isolation_level=None)
    database.execute("PRAGMA journal_mode=WAL")
    database.execute("PRAGMA synchronous=NORMAL")
    database.executescript(schema)
    return database
