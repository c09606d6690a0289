"""`campaign export`: a campaign's labelled data and newest ensemble as a directory to commit.

DFT labels are the expensive part of a potential, and a campaign's workdir (`runs/`) does not
travel to the next machine. The export holds every label that succeeded at the campaign's
level of theory (labels of other settings are left out: they must not be mixed) as DeePMD
npy systems, split as the newest ensemble saw them (its validation systems in `test/`,
everything else, labels it has not been trained on yet included, in `train/`), the newest
complete ensemble in `models/`, and `manifest.json`: settings, counts, the failed labels
with their reasons, the data the ensemble inherited from outside the campaign, and the
active-learning record. The same campaign resumed on another machine takes its labels back
with `label.restore_from` (`restore_labels`); a next campaign starts from it with
`train.initial_data` and `train.initial_models`. Run it as often as labels accumulate; it
replaces the directory whole (written beside it, then renamed).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from campaign.config import CampaignConfig
from campaign.engine import TaskSpec
from campaign.ledger import Ledger
from storage.labels import read_export_manifest, write_export_manifest
from tasks import label, train


@dataclass
class Export:
    destination: Path
    train: list[str] = field(default_factory=list)  # label names
    test: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # label name -> reason
    models_iteration: int | None = None
    inherited: list[str] = field(default_factory=list)  # directories of the ensemble's data from outside


def _label_key(system_dir: str) -> tuple[str, ...]:
    """(label task id, system) of `<workdir>/labels/<id>/systems/<system>`, wherever the workdir
    lay when the path was written."""
    parts = Path(system_dir).parts
    return parts[-3], parts[-1]


def _readable(path: Path) -> str:
    """`path` relative to the working directory when it lies below it (no machine's absolute
    path in a committed manifest), else as it is."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def newest_ensemble(config: CampaignConfig) -> tuple[int, list[Path]] | None:
    """The newest iteration whose every member has a model: (iteration, member directories),
    the newest record of each member where earlier settings left older ones."""
    for iteration_dir in sorted((config.workdir / "models").glob("iter-*"), reverse=True):
        newest: dict[str, Path] = {}
        for record in iteration_dir.glob("member-*/record.json"):
            member = "-".join(record.parent.name.split("-")[:2])
            if (record.parent / "model.pth").is_file() and (
                    member not in newest or record.stat().st_mtime > (newest[member] / "record.json").stat().st_mtime):
                newest[member] = record.parent
        if len(newest) >= config.train.ensemble_size:
            return int(iteration_dir.name.split("-")[1]), [newest[m] for m in sorted(newest)]
    return None


def export_campaign(config: CampaignConfig, destination: Path) -> Export:
    """Write the export of `config`'s campaign to `destination` (see the module's docstring)."""
    if not (config.workdir / "labels").is_dir():
        raise FileNotFoundError(f"{config.workdir} holds no labels: run `campaign run` first")
    settings = config.label.settings()
    wanted = label.settings_hash(config.label.engine, settings)
    ensemble = newest_ensemble(config)
    trained_on: tuple[list[str], list[str]] = train.training_data(ensemble[1][0]) if ensemble else ([], [])
    own = {batch.name for batch in (config.workdir / "labels").iterdir()}
    validation = {_label_key(s) for s in trained_on[1]}
    result = Export(destination, models_iteration=ensemble[0] if ensemble else None)
    staging = destination.with_name(destination.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    batches: dict[str, list[dict[str, Any]]] = {}  # label task id -> its records, for `label.restore_from`
    for batch in sorted((config.workdir / "labels").glob("*/records.json")):
        for record in label.read_records(batch.parent):
            if record.settings_hash != wanted:
                continue
            part = None
            if record.status != "ok":
                result.failed[record.name] = record.message
            else:
                part = "test" if _label_key(record.system_dir) in validation else "train"
                shutil.copytree(record.system_dir, staging / part / record.name)
                getattr(result, part).append(record.name)
            entry = {**asdict(record), "system_dir": Path(record.system_dir).name if record.system_dir else None}
            batches.setdefault(batch.parent.name, []).append({"record": entry, "part": part})
    # where the rest came from (`train.initial_data`, `test_data`): directories, below the project if they are
    result.inherited = sorted({_readable(Path(s).parent) for s in trained_on[0] + trained_on[1]
                               if _label_key(s)[0] not in own})
    members = []
    if ensemble:
        (staging / "models").mkdir(parents=True)
        for k, member_dir in enumerate(ensemble[1]):
            record = train.read_model_record(member_dir)
            shutil.copy(record.model_path, staging / "models" / f"member-{k}.pth")
            summary = {key: value for key, value in asdict(record).items()
                       if key not in ("model_path", "compressed_path", "init_model")}
            (staging / "models" / f"member-{k}.json").write_text(json.dumps(summary, indent=1))
            members.append(summary)
    iterations = []
    if (config.workdir / "ledger.sqlite").is_file():
        with Ledger(config.workdir / "ledger.sqlite", readonly=True) as ledger:
            iterations = ledger.iterations()
    manifest: dict[str, Any] = {
        "campaign": config.campaign.name, "config_hash": config.config_hash(),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "label": {"engine": config.label.engine, "settings": settings, "settings_hash": wanted},
        "labels": {"train": len(result.train), "test": len(result.test), "failed": len(result.failed)},
        "failed_labels": result.failed,
        "models": {"iteration": result.models_iteration, "members": members},
        "inherited_training_data": result.inherited,
        "iterations": iterations,
        "label_batches": batches,
    }
    staging.mkdir(parents=True, exist_ok=True)
    write_export_manifest(staging, manifest)
    if destination.exists():
        shutil.rmtree(destination)
    staging.rename(destination)
    return result


def restore_labels(config: CampaignConfig, specs: list[TaskSpec]) -> int:
    """Label tasks that a `label.restore_from` export holds get their batch directory from it,
    as the task would have written it, so the engine finds them done instead of computing
    them again (a campaign resumed on a machine without its `runs/`). Returns how many."""
    exported = {task: (source, entries) for source in map(read_export_manifest, config.label.restore_from)
                for task, entries in source.batches.items()}
    restored = 0
    for spec in specs:
        if spec.kind != "label" or spec.task_id not in exported or (spec.output_dir / "records.json").exists():
            continue
        source, entries = exported[spec.task_id]
        records = [label.LabelRecord(**record) for record, _ in entries]
        label.restore_batch(spec.output_dir, records, {record.name: source.directory / part / record.name
                                                       for record, (_, part) in zip(records, entries) if part})
        restored += 1
    return restored
