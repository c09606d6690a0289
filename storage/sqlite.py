"""The one way this project opens an SQLite database (the ledger, the label index)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


class DatabaseUnreadable(RuntimeError):
    """A database file that is missing, not a database, or not readable; the message names it."""


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


def connect_readonly(path: str | Path, table: str) -> sqlite3.Connection:
    """Open an existing database for reading only (never creating or changing it).

    Raises DatabaseUnreadable naming the file when it is absent, a directory, not an SQLite
    database, or lacks `table` (another program's database).
    """
    path = Path(path)
    if not path.is_file():
        raise DatabaseUnreadable(f"{path}: {'is a directory' if path.is_dir() else 'no such file'}")
    try:
        database = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
        tables = {row[0] for row in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise DatabaseUnreadable(f"{path}: not a readable SQLite database ({error})") from None
    if table not in tables:
        database.close()
        raise DatabaseUnreadable(f"{path}: has no '{table}' table; it is not a dendrite-campaign database")
    return database
