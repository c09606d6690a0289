"""An active-learning iteration's selection: the frames it picked to label, kept once every
exploration run of the iteration has landed.

The loop (`campaign.active_learning`) writes it; a rerun with the same key takes it instead of
the runs' trajectories; `campaign export` carries it (`copy_selections`), so a campaign
resumed on a machine without `runs/` labels the frames it picked before, and finds those
labels in the export, instead of exploring again. Exploring again would not do: MD on another
CPU need not repeat its trajectories bit for bit, and other frames are other labels.

An iteration stopped while exploring has no selection yet: the export carries its finished
runs instead (`copy_explorations`), and the loop on the next machine restores them
(`restore_explorations`) and explores only the rest: its exploration, hours of ensemble MD,
can span machines as the labels and trainings do.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path

from campaign.config import CampaignConfig
from campaign.engine import TaskSpec
from campaign.ledger import file_digest
from tasks.atomic import copy_file, write_json
from tasks.digest import json_digest
from tasks.md import RESULT_FILE

#: An iteration's selection, in `iterations/iter-<k>/`, beside the picked frames in `candidates/`.
SELECTION_FILE = "selection.json"
#: An export's finished exploration runs of iterations without a selection: `explorations/iter-<k>/<run>/`.
EXPLORATIONS = "explorations"

#: What an iteration's record takes from its exploration, kept with its selection.
SELECTION_COUNTS = ("frames", "accurate", "candidate", "failed", "max_deviation_ev_per_angstrom",
                    "candidates_too_close", "exploration_runs_failed")


@dataclass
class Selected:
    key: str  # `selection_key`: the frozen models, the runs' structures and settings, the selection's
    labels: list[tuple[str, str]]  # (label name, candidate file name), in the order picked
    counts: dict[str, float]  # SELECTION_COUNTS of the iteration's record


def selection_key(config: CampaignConfig, explorations: list[TaskSpec], models: list[str]) -> str:
    """What decides the picks: the ensemble's frozen models, each exploration run's structure and
    settings, and the selection's settings (not the loop's stopping rules). Not the runs' task
    ids: they hash the compressed models the MD ran, and `dp compress` writes other bytes each
    time (a restored member is compressed again)."""
    runs = sorted((spec.name, file_digest(spec.parameters["structure"]),
                   json_digest({k: v for k, v in spec.parameters.items() if k not in ("models", "structure")}))
                  for spec in explorations)
    picking = config.select.model_dump(mode="json", exclude={"accurate_ratio", "max_iterations", "property_targets"})
    return json_digest({"models": [file_digest(m) for m in models], "runs": runs, "select": picking,
                        "seed": config.campaign.seed, "type_map": config.campaign.type_map})


def selection_dir(workdir: Path, iteration: int) -> Path:
    return workdir / "iterations" / f"iter-{iteration:03d}"


def write_selection(config: CampaignConfig, iteration: int, selected: Selected) -> None:
    write_json(selection_dir(config.workdir, iteration) / SELECTION_FILE, asdict(selected))


def _read(directory: Path) -> Selected | None:
    """The selection in `directory` whose picked frames are all there; None if there is none."""
    try:
        stored = json.loads((directory / SELECTION_FILE).read_text())
        selected = Selected(stored["key"], [(name, file) for name, file in stored["labels"]], stored["counts"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    return selected if all((directory / "candidates" / file).is_file() for _, file in selected.labels) else None


def _copy(selected: Selected, source: Path, destination: Path) -> None:
    for _, file in selected.labels:  # byte for byte: a label task's id hashes its file
        copy_file(source / "candidates" / file, destination / "candidates" / file)
    write_json(destination / SELECTION_FILE, asdict(selected))  # last: it says the frames are there


def read_selection(config: CampaignConfig, iteration: int, key: str) -> Selected | None:
    """The iteration's selection for `key`: the workdir's own, else one a `label.restore_from`
    export holds (copied into the workdir with its frames). None when neither matches."""
    target = selection_dir(config.workdir, iteration)
    for directory in [target, *(selection_dir(Path(e), iteration) for e in config.label.restore_from)]:
        selected = _read(directory)
        if selected is None or selected.key != key:
            continue
        if directory != target:
            _copy(selected, directory, target)
        return selected
    return None


def copy_selections(workdir: Path, destination: Path) -> list[int]:
    """Every iteration's selection in `workdir`, with its picked frames, into an export
    directory's `iterations/`; returns the iterations."""
    copied = []
    for directory in sorted((workdir / "iterations").glob("iter-*")):
        selected = _read(directory)
        if selected is not None:
            _copy(selected, directory, destination / "iterations" / directory.name)
            copied.append(int(directory.name.split("-")[1]))
    return copied


def copy_explorations(workdir: Path, destination: Path, selected: Collection[int]) -> dict[int, list[str]]:
    """The finished exploration runs of each iteration not in `selected` (the iterations whose
    selection an export holds) into the export's `explorations/`; returns the runs' directory
    names by iteration."""
    copied: dict[int, list[str]] = {}
    for directory in sorted((workdir / "iterations").glob("iter-*")):
        iteration = int(directory.name.split("-")[1])
        runs = sorted(run for run in (directory / "explore").glob("*") if (run / RESULT_FILE).is_file())
        if iteration in selected or not runs:
            continue
        for run in runs:
            shutil.copytree(run, destination / EXPLORATIONS / directory.name / run.name)
        copied[iteration] = [run.name for run in runs]
    return copied


def restore_explorations(config: CampaignConfig, iteration: int, specs: list[TaskSpec]) -> int:
    """Exploration runs that a `label.restore_from` export holds get their directory from it, as
    the run wrote it (its id hashes the structure, the settings and the frozen models, which
    the export restores byte for byte), so the engine finds them done and the selection reads
    their frames. Returns how many."""
    restored = 0
    for spec in specs:
        if (spec.output_dir / RESULT_FILE).exists():
            continue
        source = next((found for export in config.label.restore_from if (
            found := Path(export) / EXPLORATIONS / selection_dir(config.workdir, iteration).name /
            spec.output_dir.name).is_dir()), None)
        if source is not None:  # over what a run here left unfinished, if any
            shutil.copytree(source, spec.output_dir, ignore=shutil.ignore_patterns(RESULT_FILE), dirs_exist_ok=True)
            copy_file(source / RESULT_FILE, spec.output_dir / RESULT_FILE)  # last, as the run wrote it
            restored += 1
    return restored
