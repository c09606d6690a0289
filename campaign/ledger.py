"""The campaign ledger: one SQLite file that remembers every task (`<workdir>/ledger.sqlite`).

A task's id is a content hash of its kind, parameters, the content of its input files and
the code version, so the same work always has the same id, and changed inputs make a new
task instead of silently reusing an old result. Workers write their outputs to a temporary
name and rename them at the end; the ledger trusts a task as done only when those final
outputs exist. A driver killed at any moment therefore loses nothing that finished: on the
next `campaign run`, a task that finished after the kill is found complete on disk and
recorded as done without running again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterable, Iterator, Sequence

from campaign import __version__
from storage.sqlite import connect, connect_readonly
from tasks.digest import json_digest

STATES = ("pending", "running", "done", "failed")
#: The driver's host, recorded with each submission (looked up once: it took 0.2 ms per call here).
_HOST = socket.gethostname()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id     TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    stage       TEXT NOT NULL,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    executor    TEXT,
    host        TEXT,
    started_at  REAL,
    ended_at    REAL,
    wall_time_s REAL,
    parameters  TEXT NOT NULL,
    outputs     TEXT,
    error       TEXT,
    transient   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_stage ON tasks (stage, state);
CREATE TABLE IF NOT EXISTS iterations (
    iteration INTEGER PRIMARY KEY,
    record    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    at      REAL NOT NULL,
    stage   TEXT NOT NULL,
    message TEXT NOT NULL
);
"""


def file_digest(path: str | Path) -> str:
    """sha256 of a file's content, or of a directory's files (relative names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def task_id(kind: str, parameters: dict[str, Any], input_files: Iterable[str | Path] = (),
            code_version: str = __version__, ordered: bool = False) -> str:
    """Content-addressed id: same kind, parameters, input contents and code version -> same id.

    Input files count by content, never by path, so a campaign moved to another directory
    keeps its ids; `ordered` when their order matters (training data: DeePMD's batches).
    """
    digests = [file_digest(p) for p in input_files]
    payload = {
        "kind": kind,
        "parameters": parameters,
        "inputs": digests if ordered else sorted(digests),
        "code": code_version,
    }
    return json_digest(payload, length=20)


@dataclass(frozen=True)
class Completion:
    """A task that ran to completion: its outputs, and where, from when and for how long it ran,
    as its worker measured it."""

    task_id: str
    outputs: dict[str, Any]
    host: str
    started_at: float  # the worker's clock, seconds since the epoch
    wall_time_s: float


@dataclass
class TaskRow:
    task_id: str
    kind: str
    stage: str
    name: str
    state: str
    attempts: int
    executor: str | None
    host: str | None
    started_at: float | None
    ended_at: float | None
    wall_time_s: float | None
    parameters: dict[str, Any]
    outputs: dict[str, Any] | None
    error: str | None
    transient: bool


class Ledger:
    """Thin, synchronous access to the ledger; a write commits at once, or with its `batch()`."""

    def __init__(self, path: str | Path, readonly: bool = False):
        """`readonly`: read an existing file and never change it (DatabaseUnreadable if it cannot be read)."""
        self.path = Path(path)
        self._db = connect_readonly(self.path, "tasks") if readonly else connect(self.path, _SCHEMA)
        self._batch_depth = 0

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _row(self, values: Sequence[Any]) -> TaskRow:
        row = TaskRow(*values)
        row.parameters = json.loads(row.parameters)  # type: ignore[arg-type]
        row.outputs = json.loads(row.outputs) if row.outputs else None  # type: ignore[arg-type]
        row.transient = bool(row.transient)
        return row

    def get(self, task_id: str) -> TaskRow | None:
        cursor = self._db.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,))
        values = cursor.fetchone()
        return self._row(values) if values else None

    def register_many(self, rows: Sequence[tuple[str, str, str, str, dict[str, Any]]]) -> dict[str, TaskRow]:
        """Insert tasks as pending unless already known, in one transaction; returns id -> row."""
        with self.batch():
            self._db.executemany(
                "INSERT OR IGNORE INTO tasks (task_id, kind, stage, name, state, parameters) VALUES (?, ?, ?, ?, ?, ?)",
                [(t, k, st, n, "pending", json.dumps(p, sort_keys=True, default=str)) for t, k, st, n, p in rows])
            result: dict[str, TaskRow] = {}
            ids = [r[0] for r in rows]
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for values in self._db.execute(f"SELECT * FROM tasks WHERE task_id IN ({marks})", chunk):
                    row = self._row(values)
                    result[row.task_id] = row
        return result

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group writes into one transaction (re-entrant); used when many tasks change at once."""
        if self._batch_depth == 0:
            self._db.execute("BEGIN")
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0:
                self._db.execute("COMMIT")

    def mark_running(self, task_id: str, executor: str) -> None:
        self._db.execute(
            "UPDATE tasks SET state = 'running', attempts = attempts + 1, executor = ?, host = ?, started_at = ?, "
            "error = NULL WHERE task_id = ?", (executor, _HOST, time.time(), task_id))

    def mark_running_many(self, task_ids: Sequence[str], executors: Sequence[str], at: Sequence[float]) -> None:
        """`mark_running` for many tasks in one statement (the engine records submissions so)."""
        self._db.executemany(
            "UPDATE tasks SET state = 'running', attempts = attempts + 1, executor = ?, host = ?, started_at = ?, "
            "error = NULL WHERE task_id = ?", [(e, _HOST, t, i) for i, e, t in zip(task_ids, executors, at)])

    def mark_done_many(self, done: Sequence[Completion]) -> None:
        """Tasks that ran to completion, in one statement: where, when and how long each ran on
        its worker (not since its submission: a task queued behind others did not run meanwhile)."""
        self._db.executemany(
            "UPDATE tasks SET state = 'done', host = ?, started_at = ?, ended_at = ?, wall_time_s = ?, outputs = ?, "
            "error = NULL, transient = 0 WHERE task_id = ?",
            [(c.host, c.started_at, c.started_at + c.wall_time_s, c.wall_time_s, json.dumps(c.outputs, default=str),
              c.task_id) for c in done])

    def mark_done(self, task_id: str, outputs: dict[str, Any], wall_time_s: float | None = None) -> None:
        """A task found done (its outputs complete on disk); its run time is unknown unless given."""
        self._db.execute(
            "UPDATE tasks SET state = 'done', ended_at = ?, outputs = ?, error = NULL, transient = 0, "
            "wall_time_s = ? WHERE task_id = ?",
            (time.time(), json.dumps(outputs, default=str), wall_time_s, task_id))

    def mark_failed(self, task_id: str, error: str, transient: bool) -> None:
        """Its wall time counts from its submission: a worker that died reported nothing."""
        now = time.time()
        self._db.execute(
            "UPDATE tasks SET state = 'failed', ended_at = ?, error = ?, transient = ?, "
            "wall_time_s = ? - started_at WHERE task_id = ?", (now, error[:4000], int(transient), now, task_id))

    def reset_running(self) -> int:
        """Tasks a stopped driver left running, back to pending; returns how many. Only the one
        driver of a workdir (`campaign.driver.driver_lock`) calls it, before it submits anything:
        without a driver nothing runs, and what finished meanwhile is found on disk."""
        return self._db.execute("UPDATE tasks SET state = 'pending' WHERE state = 'running'").rowcount

    def forget_pending(self, stages: Collection[str], keep: Collection[str]) -> int:
        """Pending tasks of `stages` other than those in `keep`: registered by an earlier run whose
        config or models made other tasks of those stages, never finished, holding nothing; kept,
        they would count as work to do in `campaign status` forever. Returns how many."""
        if not stages:
            return 0
        marks = ",".join("?" * len(stages))
        stale = [(task,) for (task,) in self._db.execute(
            f"SELECT task_id FROM tasks WHERE state = 'pending' AND stage IN ({marks})", list(stages))
            if task not in keep]
        with self.batch():
            self._db.executemany("DELETE FROM tasks WHERE task_id = ? AND state = 'pending'", stale)
        return len(stale)

    def reset_failed(self) -> int:
        """Every failed task back to pending (its error kept until it runs again); returns how many."""
        return self._db.execute("UPDATE tasks SET state = 'pending', transient = 1 WHERE state = 'failed'").rowcount

    def tasks(self, stage: str | None = None, state: str | None = None) -> list[TaskRow]:
        query, arguments = "SELECT * FROM tasks WHERE 1=1", []
        if stage:
            query, arguments = query + " AND stage = ?", arguments + [stage]
        if state:
            query, arguments = query + " AND state = ?", arguments + [state]
        return [self._row(v) for v in self._db.execute(query + " ORDER BY rowid", arguments)]

    def counts(self) -> dict[str, dict[str, int]]:
        """stage -> state -> number of tasks."""
        result: dict[str, dict[str, int]] = {}
        for stage, state, n in self._db.execute("SELECT stage, state, COUNT(*) FROM tasks GROUP BY stage, state"):
            result.setdefault(stage, {s: 0 for s in STATES})[state] = n
        return result

    def save_iteration(self, iteration: int, record: dict[str, Any]) -> None:
        """The record of an active-learning iteration (replaced when the iteration is redone)."""
        self._db.execute("INSERT OR REPLACE INTO iterations (iteration, record) VALUES (?, ?)",
                         (iteration, json.dumps(record, default=str)))

    def iterations(self) -> list[dict[str, Any]]:
        return [json.loads(r) for (r,) in self._db.execute("SELECT record FROM iterations ORDER BY iteration")]

    def log_event(self, stage: str, message: str) -> None:
        self._db.execute("INSERT INTO events (at, stage, message) VALUES (?, ?, ?)", (time.time(), stage, message))

    def events(self, limit: int = 20) -> list[tuple[float, str, str]]:
        rows = self._db.execute("SELECT at, stage, message FROM events ORDER BY rowid DESC LIMIT ?", (limit,))
        return list(reversed(rows.fetchall()))
