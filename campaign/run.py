"""`campaign run`: build structures, label them, train the ensemble, under the ledger.

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
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from campaign.config import CampaignConfig
from campaign.engine import StageResult, TaskSpec, run_stage
from campaign.ledger import Ledger, task_id
from storage.labels import LabelIndex
from tasks import build, label, train


def structure_files(config: CampaignConfig) -> list[tuple[str, Path]]:
    """Write each labelled system's structures (base + rattled copies); returns (name, file)."""
    from ase.io import read

    wanted = config.label.systems if config.label.systems is not None else [s.name for s in config.systems]
    result = []
    for system in config.systems:
        if system.name not in wanted:
            continue
        base = build.BUILDERS[system.builder](**system.params)
        copies = [base] + [build.rattled(base, system.rattle_stdev_angstrom, config.campaign.seed * 1000 + k)
                           for k in range(1, system.rattle_copies + 1)]
        for k, atoms in enumerate(copies):
            path = config.workdir / "structures" / system.name / f"{k:03d}.extxyz"
            name = f"{system.name}-{k:03d}"
            if path.exists() and len(read(path)) == len(atoms):
                result.append((name, path))
                continue
            temporary = path.with_suffix(".tmp.extxyz")
            build.write_structure(atoms, temporary)
            temporary.replace(path)
            result.append((name, path))
    return result


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


def label_stage(config: CampaignConfig, ledger: Ledger, show_progress: bool) -> StageResult:
    settings = getattr(config.label, config.label.engine)
    settings_dump = settings.model_dump(mode="json")
    specs = []
    for name, path in structure_files(config):
        parameters = {"engine": config.label.engine, "settings": settings_dump, "type_map": config.campaign.type_map}
        identifier = task_id("label", parameters, [path])
        output_dir = config.workdir / "labels" / identifier
        specs.append(TaskSpec(identifier, "label", name, config.label.executor, label.label_structures,
                              dict(structures=str(path), engine=config.label.engine, settings=settings_dump,
                                   output_dir=str(output_dir), type_map=config.campaign.type_map, names=[name]),
                              output_dir, verify_label, {**parameters, "structure": str(path)}))
    result = run_stage("label", specs, ledger, config.campaign.max_retries, config.campaign.failure_ratio_limit,
                       show_progress)
    with LabelIndex(config.workdir / "labels.sqlite") as index:
        for spec in specs:
            if spec.task_id in result.outputs:
                source = spec.name.rsplit("-", 1)[0]  # the system the structure was built from
                index.add(spec.task_id, f"system:{source}", config.label.engine,
                          result.outputs[spec.task_id]["records"])
    return result


def split_train_test(system_dirs: list[str], test_fraction: float) -> tuple[list[str], list[str]]:
    """Deterministic hold-out by content: the systems whose path hashes lowest go to the test set."""
    if test_fraction <= 0 or len(system_dirs) < 5:
        return sorted(system_dirs), []
    ranked = sorted(system_dirs, key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    n_test = max(1, round(test_fraction * len(ranked)))
    return sorted(ranked[n_test:]), sorted(ranked[:n_test])


def train_stage(config: CampaignConfig, ledger: Ledger, labels: StageResult, iteration: int,
                previous_models: list[str], show_progress: bool) -> StageResult:
    labelled = sorted({r["system_dir"] for outputs in labels.outputs.values() for r in outputs["records"]
                       if r["status"] == "ok"})
    training, testing = split_train_test(labelled, config.train.test_fraction)
    training += [str(p) for p in config.train.initial_data]
    section = config.train
    specs = []
    for member in range(section.ensemble_size):
        seed = config.campaign.seed * 100 + member + 1
        init = previous_models[member % len(previous_models)] if previous_models and section.init_from_previous \
            else None
        arguments = dict(type_map=config.campaign.type_map, seed=seed, steps=section.steps,
                         descriptor=section.descriptor.model_dump(), fitting_neuron=section.fitting_neuron,
                         loss=section.loss.model_dump(), start_learning_rate=section.start_learning_rate,
                         stop_learning_rate=section.stop_learning_rate, decay_steps=section.decay_steps,
                         compress=section.compress, init_model=init)
        identifier = task_id("train", arguments, [*training, *testing, *([init] if init else [])])
        output_dir = config.workdir / "models" / f"iter-{iteration:03d}" / f"member-{member}-{identifier[:8]}"
        specs.append(TaskSpec(identifier, "train", f"iter{iteration}-member{member}", section.executor,
                              train.train_member,
                              dict(work_dir=str(output_dir), training_systems=training, validation_systems=testing,
                                   **arguments),
                              output_dir, verify_model, arguments))
    return run_stage(f"train-{iteration}", specs, ledger, config.campaign.max_retries,
                     config.campaign.failure_ratio_limit, show_progress)


def run_campaign(config: CampaignConfig, console: Console | None = None) -> dict[str, Any]:
    """Run every configured stage; a second call on the same workdir redoes nothing finished."""
    import parsl

    from campaign.executors import make_parsl_config

    console = console or Console()
    started = time.perf_counter()
    config.workdir.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]campaign[/] {config.campaign.name}: workdir {config.workdir}")
    with Ledger(config.workdir / "ledger.sqlite") as ledger:
        ledger.log_event("campaign", f"run started (config {config.config_hash()})")
        parsl_config = make_parsl_config(config.executors, config.workdir / "parsl")
        parsl.load(parsl_config)
        try:
            labels = label_stage(config, ledger, console.is_terminal)
            models = train_stage(config, ledger, labels, 0, [str(p) for p in config.train.initial_models],
                                 console.is_terminal)
        finally:
            parsl.dfk().cleanup()
            parsl.clear()
        ledger.log_event("campaign", "run finished")
    summary = {"labels": labels, "models": models, "wall_time_s": time.perf_counter() - started,
               "workdir": config.workdir}
    print_summary(console, summary)
    return summary


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    labels, models = summary["labels"], summary["models"]
    records = [r for outputs in labels.outputs.values() for r in outputs["records"]]
    ok = sum(r["status"] == "ok" for r in records)
    console.print(f"labels: {ok} ok, {len(records) - ok + len(labels.failed)} failed; "
                  f"{labels.ran} computed now, {labels.skipped} already done")
    table = Table(title="ensemble")
    for column in ("member", "seed", "train frames", "force RMSE (eV/Å)", "energy RMSE (meV/atom)", "model"):
        table.add_column(column)
    workdir = summary["workdir"]
    members = sorted(models.outputs.values(), key=lambda outputs: outputs["model_path"])
    for member, outputs in enumerate(members):
        metrics = outputs.get("metrics") or {}
        force = metrics.get("force_ev_per_angstrom_rmse")
        energy = metrics.get("energy_per_atom_ev_rmse")
        table.add_row(str(member), str(outputs["seed"]), str(outputs["n_training_frames"]),
                      f"{force:.3f}" if force is not None else "-",
                      f"{1000 * energy:.1f}" if energy is not None else "-",
                      str(Path(outputs["model_path"]).relative_to(workdir)))
    console.print(table)
    if labels.ran == 0 and models.ran == 0:
        console.print("[green]everything was already done[/]: nothing was recomputed")
    console.print(f"wall time {summary['wall_time_s']:.1f} s")
