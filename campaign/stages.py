"""The stages that every campaign shares, as task specs: labels of structures and ensemble training.

Layout of a workdir::

    ledger.sqlite                       every task, its state, outputs and errors
    structures/<system>/<k>.extxyz      one file per structure to label
    labels/<task_id>/                   records.json, systems/ (DeePMD npy), logs/
    models/iter-000/member-<k>/         input.json, lcurve.out, model.pth, record.json
    parsl/                              Parsl's own logs

Labels are one task per structure so that a kill loses at most the structures in flight;
a label finished by a worker after the driver died is found on disk and never redone.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ase import Atoms

from campaign.config import CampaignConfig
from campaign.engine import Display, StageResult, TaskSpec, run_stage
from campaign.export import restore_checkpoints, restore_labels, restore_members
from campaign.ledger import Ledger, task_id
from storage.labels import LabelIndex
from tasks import build, label, train


def structure_files(config: CampaignConfig) -> list[tuple[str, Path]]:
    """Write each labelled system's structures (base + rattled copies), the added ones' too;
    returns (name, file)."""
    wanted = config.label.systems if config.label.systems is not None else [s.name for s in config.systems]
    wanted = [*wanted, *config.label.added_at()]
    result = []
    for system in config.systems:
        if system.name not in wanted:
            continue
        base = system.atoms
        copies = [base] + [build.rattled(base, system.rattle_stdev_angstrom, config.campaign.seed * 1000 + k)
                           for k in range(1, system.rattle_copies + 1)]
        for k, atoms in enumerate(copies):
            path = config.workdir / "structures" / system.name / f"{k:03d}.extxyz"
            result.append((f"{system.name}-{k:03d}", _write_once(atoms, path)))
    return result


def _write_once(atoms: Atoms, path: Path) -> Path:
    """Write a structure unless the file already holds it. A rerun keeps the file, so the content
    hashes of the tasks that read it stay the same whatever wrote its numbers; a system whose
    builder parameters changed is written anew, and its tasks are new tasks (a file kept because
    it held as many atoms once ran a 250-atom slab at its old lattice constant and vacuum)."""
    if not build.holds_structure(path, atoms):
        build.write_structure(atoms, path)
    return path


def verify_label(output_dir: Path) -> dict[str, Any] | None:
    try:
        records = label.read_records(output_dir)
    except (FileNotFoundError, ValueError):
        return None
    if any(r.status == "ok" and not (r.system_dir and Path(r.system_dir).is_dir()) for r in records):
        return None
    return {"records": [asdict(r) for r in records]}


def verify_model(output_dir: Path) -> dict[str, Any] | None:
    try:
        record = train.read_model_record(output_dir)
    except (FileNotFoundError, ValueError):
        return None
    return asdict(record) if Path(record.model_path).is_file() else None


def base_structure(config: CampaignConfig, name: str) -> Path:
    """The unrattled structure of a system (`structures/<name>/000.extxyz`), written once."""
    return _write_once(config.system(name).atoms, config.workdir / "structures" / name / "000.extxyz")


def label_spec(config: CampaignConfig, name: str, path: Path, stage: str | None = None) -> TaskSpec:
    """The task that labels one structure file; its id hashes the engine settings and the file."""
    settings_dump = config.label.settings()
    parameters = {"engine": config.label.engine, "settings": settings_dump, "type_map": config.campaign.type_map}
    identifier = task_id("label", parameters, [path])
    output_dir = config.workdir / "labels" / identifier
    return TaskSpec(identifier, "label", name, config.label.executor, label.label_structures,
                    dict(structures=str(path), engine=config.label.engine, settings=settings_dump,
                         output_dir=str(output_dir), type_map=config.campaign.type_map, names=[name]),
                    output_dir, verify_label, {**parameters, "structure": str(path)}, stage)


def system_of(label_name: str) -> str:
    """The system a configured structure was built from (`structure_files` names it `<system>-<k>`)."""
    return label_name.rsplit("-", 1)[0]


def ok_systems(labels: dict[str, dict[str, Any]]) -> list[str]:
    """DeePMD system directories of the labels that succeeded."""
    return sorted({r["system_dir"] for outputs in labels.values() for r in outputs["records"] if r["status"] == "ok"})


def label_stage(config: CampaignConfig, ledger: Ledger, display: Display) -> StageResult:
    specs = [label_spec(config, name, path) for name, path in structure_files(config)]
    restored = restore_labels(config, specs)
    if restored:
        ledger.log_event("label", f"{restored} labels restored from {', '.join(map(str, config.label.restore_from))}")
    result = run_stage("label", specs, ledger, config.campaign.max_retries, config.campaign.failure_ratio_limit,
                       display)
    with LabelIndex(config.workdir / "labels.sqlite") as index:
        for spec in specs:
            if spec.task_id in result.outputs:
                index.add(spec.task_id, f"system:{system_of(spec.name)}", config.label.engine,
                          result.outputs[spec.task_id]["records"])
    return result


def split_train_test(system_dirs: list[str], test_fraction: float, workdir: Path) -> tuple[list[str], list[str]]:
    """Deterministic hold-out: the systems whose path below `workdir` hashes lowest go to the test set.

    The path below the workdir (the label's content-addressed id and the system's name), not
    the absolute path, so that the same campaign holds out the same systems wherever it runs.
    """
    if test_fraction <= 0 or len(system_dirs) < 5:
        return sorted(system_dirs), []
    ranked = sorted(system_dirs, key=lambda s: hashlib.sha256(os.path.relpath(s, workdir).encode()).hexdigest())
    n_test = max(1, round(test_fraction * len(ranked)))
    return sorted(ranked[n_test:]), sorted(ranked[:n_test])


def train_specs(config: CampaignConfig, training: list[str], testing: list[str], iteration: int,
                previous_models: list[str]) -> list[TaskSpec]:
    """The members of `models/iter-<iteration>` on its schedule (`TrainSection.schedule`), each
    from its previous model where that schedule says so."""
    section = config.train
    schedule = section.schedule(iteration)
    specs = []
    for member in range(section.ensemble_size):
        seed = config.campaign.seed * 100 + member + 1
        init = previous_models[member % len(previous_models)] if previous_models and schedule.from_previous_model \
            else None
        arguments = dict(type_map=config.campaign.type_map, seed=seed, steps=schedule.steps,
                         descriptor=schedule.descriptor.as_arguments(), fitting_neuron=schedule.fitting_neuron,
                         loss=schedule.loss.model_dump(), start_learning_rate=schedule.start_learning_rate,
                         stop_learning_rate=section.stop_learning_rate, decay_steps=section.decay_steps,
                         compress=section.compress, init_model=init,
                         **({"system_weights": schedule.system_weights} if schedule.system_weights else {}))
        # Contents, never paths: the previous model and the data by digest, in DeePMD's batch order.
        hashed = {**{k: v for k, v in arguments.items() if k != "init_model"}, "n_training_systems": len(training),
                  "from_previous_model": init is not None}
        identifier = task_id("train", hashed, [*training, *testing, *([init] if init else [])], ordered=True)
        output_dir = config.workdir / "models" / f"iter-{iteration:03d}" / f"member-{member}-{identifier[:8]}"
        specs.append(TaskSpec(identifier, "train", f"iter{iteration}-member{member}", section.executor,
                              train.train_member,
                              dict(work_dir=str(output_dir), training_systems=training, validation_systems=testing,
                                   **arguments),
                              output_dir, verify_model, arguments))
    return specs


def train_stage(config: CampaignConfig, ledger: Ledger, training: list[str], testing: list[str], iteration: int,
                previous_models: list[str], display: Display) -> StageResult:
    """Train the ensemble of `models/iter-<iteration>` (`train_specs`), restoring the members an export holds."""
    specs = train_specs(config, training, testing, iteration, previous_models)
    restored = restore_members(config, specs)
    if restored:
        ledger.log_event(f"train-{iteration}", f"{restored} members restored from "
                                               f"{', '.join(map(str, config.train.restore_from))}")
    resumed = restore_checkpoints(config, specs)
    if resumed:
        ledger.log_event(f"train-{iteration}", f"{resumed} members go on from the checkpoints of "
                                               f"{', '.join(map(str, config.train.restore_from))}")
    result = run_stage(f"train-{iteration}", specs, ledger, config.campaign.max_retries,
                       config.campaign.failure_ratio_limit, display)
    descriptor = config.train.network(iteration)[0]
    cutoffs = [("max_neighbours", "", descriptor)]
    cutoffs += [("max_three_body_neighbours", "three_body's ", descriptor.three_body)] if descriptor.three_body else []
    for key, which, section in cutoffs:
        crowded = max((outputs.get(key) or 0 for outputs in result.outputs.values()), default=0)
        if crowded > sum(section.sel) and result.ran:  # once, when members trained
            ledger.log_event(f"train-{iteration}", f"warning: its data hold atoms with {crowded} neighbours within "
                                                   f"{section.rcut_angstrom} Å, more than its descriptor's {which}sel "
                                                   f"{section.sel}: DeePMD dropped the farthest; raise sel")
    return result


def needs_trained_models(config: CampaignConfig) -> bool:
    """Whether the campaign needs an ensemble: to explore, for a final-model study or property, or as its goal."""
    uses_final = any(study.potential == "final_model" for study in config.production)
    uses_final |= bool(config.properties and config.properties.uses_models)
    return bool(config.explore) or uses_final or not (config.production or config.properties)


@dataclass
class AddedData:
    """The DeePMD systems of `label.added` by the iteration whose ensemble first trains on them."""

    training: dict[int, list[str]] = field(default_factory=dict)
    testing: dict[int, list[str]] = field(default_factory=dict)


def split_added(config: CampaignConfig, labels: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]],
                                                                                    AddedData]:
    """The first ensemble's labels, and the added ones by iteration, each iteration's held out on
    its own (the first ensemble's split stays as it was without them)."""
    added_at = config.label.added_at()

    def iteration_of(outputs: dict[str, Any]) -> int:
        return added_at.get(system_of(outputs["records"][0]["name"]), 0)

    added = AddedData()
    for iteration in sorted(set(added_at.values())):
        systems = ok_systems({k: o for k, o in labels.items() if iteration_of(o) == iteration})
        added.training[iteration], added.testing[iteration] = split_train_test(systems, config.train.test_fraction,
                                                                              config.workdir)
    return {k: o for k, o in labels.items() if iteration_of(o) == 0}, added


def initial_stage(config: CampaignConfig, ledger: Ledger, display: Display) -> dict[str, Any]:
    """Labels of the configured systems and the iteration-0 ensemble (or the given initial models)."""
    training = [str(p) for p in config.train.initial_data]
    testing = [str(p) for p in config.train.test_data]
    outcome: dict[str, Any] = {"labels": None, "models": None, "added": AddedData(),
                               "model_paths": [str(p) for p in config.train.initial_models]}
    if not needs_trained_models(config):
        return {**outcome, "training": training, "testing": testing}
    if (config.label.systems != [] or config.label.added) and config.systems:
        outcome["labels"] = label_stage(config, ledger, display)
        first, outcome["added"] = split_added(config, outcome["labels"].outputs)
        labelled_training, labelled_testing = split_train_test(ok_systems(first), config.train.test_fraction,
                                                               config.workdir)
        training, testing = training + labelled_training, testing + labelled_testing
    if not outcome["model_paths"]:
        if not training:
            raise ValueError("the campaign needs trained models but has no labels: give systems to label, "
                             "train.initial_data, or train.initial_models")
        outcome["models"] = train_stage(config, ledger, training, testing, 0, [], display)
        outcome["model_paths"] = sorted(o["model_path"] for o in outcome["models"].outputs.values())
    return {**outcome, "training": training, "testing": testing}
