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
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ase import Atoms
from rich.console import Console
from rich.table import Table

from campaign.config import CampaignConfig
from campaign.engine import StageResult, TaskSpec, run_stage
from campaign.ledger import Ledger, task_id
from storage.labels import LabelIndex
from tasks import build, label, train


def structure_files(config: CampaignConfig) -> list[tuple[str, Path]]:
    """Write each labelled system's structures (base + rattled copies); returns (name, file)."""
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
            result.append((f"{system.name}-{k:03d}", _write_once(atoms, path)))
    return result


def _write_once(atoms: Atoms, path: Path) -> Path:
    """Write a structure unless the file already holds one of the same size (a rerun keeps the
    file, so the content hashes of the tasks that read it stay the same)."""
    from ase.io import read

    if not (path.exists() and len(read(path)) == len(atoms)):
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
    system = next(s for s in config.systems if s.name == name)
    atoms = build.BUILDERS[system.builder](**system.params)
    return _write_once(atoms, config.workdir / "structures" / name / "000.extxyz")


def label_spec(config: CampaignConfig, name: str, path: Path, stage: str | None = None) -> TaskSpec:
    """The task that labels one structure file; its id hashes the engine settings and the file."""
    settings_dump = getattr(config.label, config.label.engine).model_dump(mode="json")
    parameters = {"engine": config.label.engine, "settings": settings_dump, "type_map": config.campaign.type_map}
    identifier = task_id("label", parameters, [path])
    output_dir = config.workdir / "labels" / identifier
    return TaskSpec(identifier, "label", name, config.label.executor, label.label_structures,
                    dict(structures=str(path), engine=config.label.engine, settings=settings_dump,
                         output_dir=str(output_dir), type_map=config.campaign.type_map, names=[name]),
                    output_dir, verify_label, {**parameters, "structure": str(path)}, stage)


def ok_systems(labels: dict[str, dict[str, Any]]) -> list[str]:
    """DeePMD system directories of the labels that succeeded."""
    return sorted({r["system_dir"] for outputs in labels.values() for r in outputs["records"] if r["status"] == "ok"})


def label_stage(config: CampaignConfig, ledger: Ledger, show_progress: bool) -> StageResult:
    specs = [label_spec(config, name, path) for name, path in structure_files(config)]
    result = run_stage("label", specs, ledger, config.campaign.max_retries, config.campaign.failure_ratio_limit,
                       show_progress)
    with LabelIndex(config.workdir / "labels.sqlite") as index:
        for spec in specs:
            if spec.task_id in result.outputs:
                source = spec.name.rsplit("-", 1)[0]  # the system the structure was built from
                index.add(spec.task_id, f"system:{source}", config.label.engine,
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


def train_stage(config: CampaignConfig, ledger: Ledger, training: list[str], testing: list[str], iteration: int,
                previous_models: list[str], show_progress: bool) -> StageResult:
    """Train the ensemble of `models/iter-<iteration>`, each member from its previous model if any."""
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


def needs_trained_models(config: CampaignConfig) -> bool:
    """Whether the campaign needs an ensemble: to explore, for a final-model study, or as its goal."""
    uses_final = any(study.potential == "final_model" for study in config.production)
    return bool(config.explore) or uses_final or not config.production


def initial_stage(config: CampaignConfig, ledger: Ledger, show_progress: bool) -> dict[str, Any]:
    """Labels of the configured systems and the iteration-0 ensemble (or the given initial models)."""
    training = [str(p) for p in config.train.initial_data]
    testing = [str(p) for p in config.train.test_data]
    outcome: dict[str, Any] = {"labels": None, "models": None, "model_paths": [str(p) for p in
                                                                             config.train.initial_models]}
    if not needs_trained_models(config):
        return {**outcome, "training": training, "testing": testing}
    if config.label.systems != [] and config.systems:
        outcome["labels"] = label_stage(config, ledger, show_progress)
        labelled_training, labelled_testing = split_train_test(ok_systems(outcome["labels"].outputs),
                                                               config.train.test_fraction, config.workdir)
        training, testing = training + labelled_training, testing + labelled_testing
    if not outcome["model_paths"]:
        if not training:
            raise ValueError("the campaign needs trained models but has no labels: give systems to label, "
                             "train.initial_data, or train.initial_models")
        outcome["models"] = train_stage(config, ledger, training, testing, 0, [], show_progress)
        outcome["model_paths"] = sorted(o["model_path"] for o in outcome["models"].outputs.values())
    return {**outcome, "training": training, "testing": testing}


def run_campaign(config: CampaignConfig, console: Console | None = None, retry_failed: bool = False
                 ) -> dict[str, Any]:
    """Run every configured stage; a second call on the same workdir redoes nothing finished.

    Stages: labels of the systems and the first ensemble (unless initial models are given),
    the active-learning loop (when `explore` is set), production sweeps into the store.
    Deterministic failures are not rerun unless `retry_failed` (after the cause was fixed).
    """
    import parsl

    from campaign.active_learning import run_loop
    from campaign.executors import make_parsl_config
    from campaign.production import production_stage, start_dask

    # Tables keep their columns readable in logs and pipes too (rich assumes 80 columns there).
    console = console or Console(width=None if sys.stdout.isatty() else 150)
    started = time.perf_counter()
    config.workdir.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]campaign[/] {config.campaign.name}: workdir {config.workdir}")
    show = console.is_terminal
    summary: dict[str, Any] = {"workdir": config.workdir, "iterations": [], "production": None, "store": None}
    with Ledger(config.workdir / "ledger.sqlite") as ledger:
        ledger.log_event("campaign", f"run started (config {config.config_hash()})")
        if retry_failed:
            retried = ledger.reset_failed()
            ledger.log_event("campaign", f"{retried} failed tasks set back to pending (--retry-failed)")
        parsl.load(make_parsl_config(config.executors, config.workdir / "parsl"))
        client = None
        try:
            initial = initial_stage(config, ledger, show)
            summary.update(labels=initial["labels"], models=initial["models"], initial_models=initial["models"])
            models = initial["model_paths"]
            ran = sum(r.ran for r in (initial["labels"], initial["models"]) if r is not None)
            if config.explore:
                models, records, trained = run_loop(config, ledger, models, initial["training"],
                                                    initial["testing"], show)
                summary["iterations"] = records
                summary["models"] = trained or summary["models"]
                ran += sum(r.tasks_run for r in records)
            if config.production:
                client = start_dask(config)
                console.print(f"Dask dashboard: {client.dashboard_link}")
                result, written = production_stage(config, ledger, models, client, show)
                summary["production"], summary["store"] = result, config.store_path
                summary["written"] = written
                ran += result.ran
            summary["model_paths"], summary["ran"] = models, ran
        finally:
            if client is not None:
                client.close()
                client.cluster.close()
            parsl.dfk().cleanup()
            parsl.clear()
        ledger.log_event("campaign", "run finished")
    summary["wall_time_s"] = time.perf_counter() - started
    print_summary(console, summary, config)
    return summary


def print_summary(console: Console, summary: dict[str, Any], config: CampaignConfig) -> None:
    labels, models = summary["labels"], summary["models"]
    if labels is not None:
        records = [r for outputs in labels.outputs.values() for r in outputs["records"]]
        ok = sum(r["status"] == "ok" for r in records)
        console.print(f"labels: {ok} ok, {len(records) - ok + len(labels.failed)} failed; "
                      f"{labels.ran} computed now, {labels.skipped} already done")
    if summary["iterations"]:
        console.print(iterations_table([{**asdict(r), **r.ratios()} for r in summary["iterations"]]))
    if models is not None:
        print_ensemble(console, models, summary["workdir"])
    if summary["production"] is not None:
        print_production(console, config)
    if summary["ran"] == 0:
        console.print("[green]everything was already done[/]: nothing was recomputed")
    console.print(f"wall time {summary['wall_time_s']:.1f} s")


def iterations_table(records: list[dict[str, Any]]) -> Table:
    """One row per active-learning iteration: exploration outcome ratios, labels, test RMSE, times."""
    table = Table(title="active learning")
    for column in ("iteration", "runs", "frames", "accurate", "candidate", "failed", "labels added",
                   "force RMSE (eV/Å)", "explore+label (s)", "train (s)", "stop"):
        table.add_column(column)
    for r in records:
        rmse = r.get("force_rmse_ev_per_angstrom")
        table.add_row(str(r["iteration"]), f"{r['exploration_runs']} ({r['exploration_runs_failed']} failed)",
                      str(r["frames"]), f"{r['accurate_ratio']:.3f}", f"{r['candidate_ratio']:.3f}",
                      f"{r['failed_ratio']:.3f}", f"{r['labels_added']} (+{r['labels_failed']} failed)",
                      f"{rmse:.3f}" if rmse is not None else "-", f"{r['explore_and_label_wall_time_s']:.0f}",
                      f"{r['train_wall_time_s']:.0f}", r.get("converged") or "")
    return table


def write_plots(config: CampaignConfig) -> list[Path]:
    """PNG plots of every production study that has the fields: z-profiles, phase fractions, MSD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from storage import open_campaign

    campaign = open_campaign(config.workdir)
    written = []
    for study in campaign.studies():
        fields = campaign.fields(study)
        plots = [("temperature_profile", "slab_temperature", campaign.plot.temperature_profile),
                 ("bcc_fraction", "structure_fraction", campaign.plot.phase_fractions),
                 ("msd_surface", "msd", campaign.plot.msd)]
        for name, variable, plot in plots:
            if variable not in fields:
                continue
            figure, ax = plt.subplots(figsize=(5.5, 4.2))
            plot(study, ax=ax)
            ax.set_title(f"{study}: {name.replace('_', ' ')}")
            path = config.workdir / "plots" / f"{study}_{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            figure.tight_layout()
            figure.savefig(path, dpi=110)
            plt.close(figure)
            written.append(path)
    return written


def print_production(console: Console, config: CampaignConfig) -> None:
    from campaign.production import run_summary

    console.print(f"fields: {config.store_path}  (open with: storage.open_campaign('{config.workdir}'))")
    for path in write_plots(config):
        console.print(f"plot: {path}")
    for study in config.production:
        try:
            frame = run_summary(config, study.name)
        except Exception as error:  # a study without any finished run has no group in the store
            console.print(f"[yellow]{study.name}[/]: no fields ({error})")
            continue
        table = Table(title=f"production study {study.name}")
        for column in frame.columns:
            table.add_column(str(column))
        for row in frame.itertuples(index=False):
            table.add_row(*(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row))
        console.print(table)


def print_ensemble(console: Console, models: StageResult, workdir: Path) -> None:
    table = Table(title="ensemble")
    for column in ("member", "seed", "train frames", "force RMSE (eV/Å)", "energy RMSE (meV/atom)", "model"):
        table.add_column(column)
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
