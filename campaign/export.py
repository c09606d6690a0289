"""`campaign export`: a campaign's labelled data and newest ensemble as a directory to commit.

DFT labels are the expensive part of a potential, and a campaign's workdir (`runs/`) does not
travel to the next machine. The export holds every label that succeeded at the campaign's
level of theory (labels of other settings are left out: they must not be mixed) as DeePMD
npy systems, split as the newest ensemble saw them (its validation systems in `test/`,
everything else, labels it has not been trained on yet included, in `train/`), the frozen
models of the newest complete ensemble in `models/` (the finished members of a newer ensemble
whose training was stopped halfway, and the complete ensembles of the iterations before, in
`models/iter-<n>/`), the newest checkpoint of each member still in training in `checkpoints/`
(a training killed with its machine goes on from there), and `manifest.json`: settings,
counts, the failed labels with their reasons, each member's train task id, the data the
ensemble inherited from outside the campaign, and the active-learning record; and in
`iterations/` each iteration's selection, the frames it picked to label, and in `explorations/`
the finished runs of an iteration stopped before its selection. The same campaign resumed on
another machine takes its labels, selections and exploration runs back with
`label.restore_from` (`restore_labels`, `campaign.selection`) and its trained members with
`train.restore_from` (`restore_members`, and `restore_checkpoints` for those in training); a
next campaign starts from it with `train.initial_data` and `train.initial_models`. Run it as
often as labels accumulate; it replaces the directory whole (written beside it, then renamed).
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
from campaign.selection import copy_explorations, copy_selections
from storage.labels import read_export_manifest, write_export_manifest
from tasks import label, train


@dataclass
class Export:
    destination: Path
    train: list[str] = field(default_factory=list)  # label names
    test: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # label name -> reason
    models_iteration: int | None = None
    unfinished_iteration: tuple[int, int] | None = None  # (iteration, finished members) of a newer ensemble
    inherited: list[str] = field(default_factory=list)  # directories of the ensemble's data from outside
    selections: list[int] = field(default_factory=list)  # iterations whose picked frames it holds
    explorations: dict[int, int] = field(default_factory=dict)  # iteration -> finished runs, its selection not made
    in_training: list[tuple[int, int, int, int]] = field(default_factory=list)  # (iteration, member, step, steps)


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


def trained_ensembles(config: CampaignConfig) -> list[tuple[int, dict[int, Path]]]:
    """Every finished member, grouped into ensembles: by iteration, then by what members of
    one ensemble share (`train.ensemble_key`: data and settings, seeds aside), so a retraining
    with new labels or settings is not mixed with the members it replaces. Oldest first; in
    each, its member directories by index (the newest record where one member has several)."""
    def written(member_dir: Path) -> float:
        return (member_dir / "record.json").stat().st_mtime

    groups: dict[tuple[int, str], dict[int, Path]] = {}
    for record in (config.workdir / "models").glob("iter-*/member-*/record.json"):
        if not (record.parent / "model.pth").is_file():
            continue
        iteration, member = int(record.parent.parent.name.split("-")[1]), int(record.parent.name.split("-")[1])
        members = groups.setdefault((iteration, train.ensemble_key(record.parent)), {})
        if member not in members or written(record.parent) > written(members[member]):
            members[member] = record.parent
    return [(key[0], groups[key]) for key in
            sorted(groups, key=lambda key: (key[0], max(map(written, groups[key].values()))))]


def export_campaign(config: CampaignConfig, destination: Path) -> Export:
    """Write the export of `config`'s campaign to `destination` (see the module's docstring)."""
    if not (config.workdir / "labels").is_dir():
        raise FileNotFoundError(f"{config.workdir} holds no labels: run `campaign run` first")
    settings = config.label.settings()
    wanted = label.settings_hash(config.label.engine, settings)
    ensembles = trained_ensembles(config)
    ensemble = next((e for e in reversed(ensembles) if len(e[1]) >= config.train.ensemble_size), None)
    # held out as the newest training saw them
    newest = ensembles[-1][1] if ensembles else {}
    trained_on: tuple[list[str], list[str]] = train.training_data(next(iter(newest.values()))) if newest else ([], [])
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
    iterations, train_tasks, in_training = [], {}, []
    if (config.workdir / "ledger.sqlite").is_file():
        with Ledger(config.workdir / "ledger.sqlite", readonly=True) as ledger:
            iterations = ledger.iterations()
            # member directory -> the train task that made it (`train.restore_from` finds it by this id)
            rows = [row for row in ledger.tasks() if row.kind == "train"]
            train_tasks = {Path(row.outputs["model_path"]).parent.name: row.task_id
                           for row in rows if row.state == "done" and row.outputs}
            in_training = [row.task_id for row in rows if row.state != "done"]

    def copy_member(member_dir: Path, directory: str, k: int) -> dict[str, Any]:
        # the frozen model only: a compressed one is 4 times its size and `dp compress` remakes it in seconds
        record = train.read_model_record(member_dir)
        files = {"model": f"{directory}/member-{k}.pth"}
        (staging / directory).mkdir(parents=True, exist_ok=True)
        shutil.copy(record.model_path, staging / files["model"])
        summary = {key: value for key, value in asdict(record).items()
                   if key not in ("model_path", "compressed_path", "init_model")}
        (staging / directory / f"member-{k}.json").write_text(json.dumps(summary, indent=1))
        return {"task_id": train_tasks.get(member_dir.name), "files": files, "record": summary,
                "network": train.member_network(member_dir)}

    members = [copy_member(ensemble[1][k], "models", i) for i, k in enumerate(sorted(ensemble[1]))] if ensemble else []
    # the complete ensembles before it, by iteration: the active-learning loop resumed on another machine
    # takes each back (`train.restore_from`) instead of training it again, and its picks with it
    # (the newest of an iteration's complete ensembles: one retrained with other settings replaces the first)
    complete = {iteration: finished for iteration, finished in ensembles
                if ensemble and iteration < ensemble[0] and len(finished) >= config.train.ensemble_size}
    earlier = [{"iteration": iteration, "members": [copy_member(member_dir, f"models/iter-{iteration:03d}", k)
                                                    for k, member_dir in sorted(finished.items())]}
               for iteration, finished in sorted(complete.items())]
    unfinished = None
    if ensembles and ensembles[-1] is not ensemble:  # a training stopped halfway: its finished members, so
        iteration, finished = ensembles[-1]           # that they are not trained again
        result.unfinished_iteration = (iteration, len(finished))
        unfinished = {"iteration": iteration, "members": [
            copy_member(member_dir, f"models/iter-{iteration:03d}", k) for k, member_dir in sorted(finished.items())]}
    # members still in training: the newest checkpoint of each, so that on the next machine its
    # training goes on from there (`restore_checkpoints`) instead of from nothing
    checkpoints = []
    for member_dir in sorted((config.workdir / "models").glob("iter-*/member-*-*")):
        checkpoint = train.latest_checkpoint(member_dir)
        task = next((t for t in in_training if t.startswith(member_dir.name.rsplit("-", 1)[1])), None)
        if checkpoint is None or task is None or (member_dir / "record.json").is_file():
            continue
        file = f"checkpoints/{member_dir.parent.name}/{member_dir.name}/{checkpoint.name}"
        (staging / file).parent.mkdir(parents=True)
        shutil.copy(checkpoint, staging / file)
        step = train.checkpoint_step(checkpoint)
        steps = json.loads((member_dir / "input.json").read_text())["training"]["numb_steps"]
        checkpoints.append({"task_id": task, "file": file, "step": step, "steps": steps})
        result.in_training.append((int(member_dir.parent.name.split("-")[1]), int(member_dir.name.split("-")[1]),
                                   step, steps))
    manifest: dict[str, Any] = {
        "campaign": config.campaign.name, "config_hash": config.config_hash(),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "label": {"engine": config.label.engine, "settings": settings, "settings_hash": wanted},
        "labels": {"train": len(result.train), "test": len(result.test), "failed": len(result.failed)},
        "failed_labels": result.failed,
        "models": {"iteration": result.models_iteration, "members": members},
        "unfinished_ensemble": unfinished,
        "earlier_ensembles": earlier,
        "training_checkpoints": checkpoints,
        "inherited_training_data": result.inherited,
        "iterations": iterations,
        "label_batches": batches,
    }
    staging.mkdir(parents=True, exist_ok=True)
    manifest["selections"] = result.selections = copy_selections(config.workdir, staging)
    explorations = copy_explorations(config.workdir, staging, result.selections)
    manifest["explorations"] = {f"{iteration}": runs for iteration, runs in explorations.items()}
    result.explorations = {iteration: len(runs) for iteration, runs in explorations.items()}
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


def restore_members(config: CampaignConfig, specs: list[TaskSpec]) -> int:
    """Train tasks whose member a `train.restore_from` export holds get their directory from it,
    as the task would have written it (the id hashes the training data's contents and every
    setting, so the same id is the same training), and the engine finds them done instead of
    training them again. Returns how many."""
    exported = {task: member for source in map(read_export_manifest, config.train.restore_from)
                for task, member in source.members.items()}
    restored = 0
    for spec in specs:
        if spec.kind != "train" or spec.task_id not in exported or spec.verify(spec.output_dir) is not None:
            continue
        member = exported[spec.task_id]
        train.restore_member(member.model, member.record, **spec.kwargs)
        restored += 1
    return restored


def restore_checkpoints(config: CampaignConfig, specs: list[TaskSpec]) -> int:
    """Train tasks not done whose member was in training when a `train.restore_from` export was
    written go on from its checkpoint: copied into the member's directory, where
    `tasks.train.train_member` restarts from the newest checkpoint (a newer one of the
    directory's own wins). Returns how many."""
    exported: dict[str, Path] = {}
    for source in map(read_export_manifest, config.train.restore_from):
        for task, checkpoint in source.checkpoints.items():
            if task not in exported or train.checkpoint_step(checkpoint) > train.checkpoint_step(exported[task]):
                exported[task] = checkpoint
    restored = 0
    for spec in specs:
        if spec.kind != "train" or spec.task_id not in exported or spec.verify(spec.output_dir) is not None:
            continue
        checkpoint = exported[spec.task_id]
        own = train.latest_checkpoint(spec.output_dir)
        if own is None or train.checkpoint_step(own) < train.checkpoint_step(checkpoint):
            train.adopt_checkpoint(spec.output_dir, checkpoint)
            restored += 1
    return restored
