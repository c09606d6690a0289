"""Index of every labelled structure (`<workdir>/labels.sqlite`), with its provenance.

The labels themselves are DeePMD npy systems written by `tasks.label`; this table says,
for each structure, where it came from (`source`: a builder system, an exploration
iteration, a cut-out), which engine and settings labelled it (`settings_hash`), whether it
succeeded, its energy and largest force, and which npy system holds it. Failed labels are
kept with their reason and never reach training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from storage.sqlite import connect, connect_readonly

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    name                      TEXT NOT NULL,
    task_id                   TEXT NOT NULL,
    source                    TEXT NOT NULL,
    engine                    TEXT NOT NULL,
    settings_hash             TEXT NOT NULL,
    status                    TEXT NOT NULL,
    message                   TEXT,
    n_atoms                   INTEGER NOT NULL,
    energy_ev                 REAL,
    max_force_ev_per_angstrom REAL,
    wall_time_s               REAL,
    system_dir                TEXT,
    PRIMARY KEY (task_id, name)
);
"""


class LabelIndex:
    def __init__(self, path: str | Path, readonly: bool = False):
        """`readonly`: read an existing file and never change it (DatabaseUnreadable if it cannot be read)."""
        self.path = Path(path)
        self._db = connect_readonly(self.path, "labels") if readonly else connect(self.path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "LabelIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, task_id: str, source: str, engine: str, records: Iterable[dict[str, Any]]) -> None:
        """Record a finished label task's structures (idempotent: a rerun replaces its own rows)."""
        rows = [(r["name"], task_id, source, engine, r["settings_hash"], r["status"], r.get("message") or None,
                 r["n_atoms"], r.get("energy_ev"), r.get("max_force_ev_per_angstrom"), r.get("wall_time_s"),
                 r.get("system_dir")) for r in records]
        self._db.executemany("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def training_systems(self) -> list[str]:
        """The npy systems of every successful label, each once."""
        rows = self._db.execute("SELECT DISTINCT system_dir FROM labels WHERE status = 'ok' ORDER BY system_dir")
        return [r[0] for r in rows]

    def frame(self):
        """The whole table as a pandas DataFrame."""
        import pandas as pd

        return pd.read_sql_query("SELECT * FROM labels ORDER BY rowid", self._db)


#: The file of a `campaign export` directory that says what it holds (`campaign.export` writes it).
EXPORT_MANIFEST = "manifest.json"


@dataclass
class ExportedMember:
    """A trained ensemble member an export holds: the id of the train task that made it, its
    frozen model and its record (the fields of `tasks.train.ModelRecord` but its paths)."""

    task_id: str
    model: Path
    record: dict[str, Any]
    network: dict[str, Any] | None  # `tasks.train.network` of its input; None in exports older than it


@dataclass
class ExportManifest:
    """What an export holds for restoring: its level of theory; by label task id, each batch's
    records (as `tasks.label.LabelRecord` fields) with the part (`train`, `test`, or None for
    a failed label) where its system lies as `<directory>/<part>/<name>`; by train task id,
    every member it holds, of its ensemble and of the earlier and unfinished ones (exports
    written before members carried their task id: none); by train task id, the newest
    checkpoint of each member still in training when it was written; the active-learning
    records of the run that did each iteration's work."""

    directory: Path
    settings_hash: str
    batches: dict[str, list[tuple[dict[str, Any], str | None]]]
    members: dict[str, ExportedMember]
    checkpoints: dict[str, Path] = field(default_factory=dict)
    iterations: list[dict[str, Any]] = field(default_factory=list)  # the active-learning records, by iteration


def write_export_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))


def read_export_manifest(directory: str | Path) -> ExportManifest:
    """What an export directory holds (ValueError saying why when it is not one)."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / EXPORT_MANIFEST).read_text())
        members = {}
        others = [manifest.get("unfinished_ensemble") or {"members": []}, *manifest.get("earlier_ensembles", [])]
        for entry in manifest["models"]["members"] + [entry for other in others for entry in other["members"]]:
            if entry.get("task_id"):
                members[entry["task_id"]] = ExportedMember(entry["task_id"], directory / entry["files"]["model"],
                                                           entry["record"], entry.get("network"))
        return ExportManifest(directory, manifest["label"]["settings_hash"],
                              {task: [(entry["record"], entry["part"]) for entry in entries]
                               for task, entries in manifest["label_batches"].items()}, members,
                              {entry["task_id"]: directory / entry["file"]
                               for entry in manifest.get("training_checkpoints", [])},
                              manifest.get("iterations", []))
    except FileNotFoundError:
        raise ValueError(f"{directory} is not a `campaign export` (no {EXPORT_MANIFEST})") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{directory / EXPORT_MANIFEST}: unreadable ({type(error).__name__}: {error})") from None
