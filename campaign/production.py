"""Production sweeps: MD over each study's sweep, every run writing its own region of the store.

Before a study's first run, its group of the campaign store is allocated for the whole
sweep from what its fields declare (`tasks.analyze.declared_dataset` for each distinct
parameter set: a deposition at a higher rate has a taller box, so more z-slabs; the study
holds the union). Each sweep point × system × replica is then one Parsl task
(`tasks.analyze.md_with_fields`) that runs the protocol with the final model (or a named
model, or a classical potential), streams its fields, and writes them into its region from
the worker: the driver holds no run's data. As runs land, the Dask cluster reduces each one
to its row of the study's summary, so the dashboard shows the analysis while the campaign
runs; a `performance_report` of it is saved under the workdir.

A study with several systems gets a `system` dimension in front of its sweep dimensions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from campaign.config import CampaignConfig, ProductionStudy
from campaign.engine import Display, StageResult, TaskSpec, run_stage, spared_by_ctrl_c
from campaign.ledger import Ledger, file_digest, task_id
from campaign.stages import base_structure
from campaign.sweep import sweep_axes
from storage import fields as store
from storage.layout import SweepAxes
from storage.reduce import summary_table
from tasks import analyze
from tasks.potentials import Potential
from tasks.protocols import PROTOCOLS


@dataclass
class RunRef:
    """Where one production run sits in its study's sweep, and its task."""

    study: str
    coordinates: dict[str, Any]  # sweep coordinates (system included when the study has several)
    spec: TaskSpec


def study_axes(study: ProductionStudy) -> SweepAxes:
    axes = sweep_axes(study.sweep, study.replicas)
    return axes.with_system(list(study.systems)) if len(study.systems) > 1 else axes


def potential_for(study: ProductionStudy, models: list[str]) -> Potential:
    if study.potential_kind == "final_model":
        if not models:
            raise ValueError(f"production study '{study.name}' uses the final model, but the campaign has none")
        return Potential("deepmd", [models[0]])
    if study.potential_kind == "model_file":
        return Potential("deepmd", [study.potential])
    return Potential(study.potential)


@dataclass
class StoredRun:
    """A production task is done when its result.json says it stored its fields and the store
    holds the run as complete or failed (a kill between the two redoes the run)."""

    writer: store.RunWriter

    def __call__(self, output_dir: Path) -> dict[str, Any] | None:
        try:
            outputs = json.loads((output_dir / "result.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        if not outputs.get("stored") or self.writer.status() not in (store.RUN_COMPLETE, store.RUN_FAILED):
            return None
        return {k: outputs[k] for k in ("status", "reason", "steps_done", "n_frames", "wall_time_s")}


def run_parameters(config: CampaignConfig, study: ProductionStudy, point: Any) -> dict[str, Any]:
    """The validated protocol parameters of one run (defaults filled in): its seed follows the
    campaign's seed unless the study gives one, and differs by replica."""
    params = study.run_params(point)
    params["seed"] = int(params.get("seed", config.campaign.seed * 1000 + 1)) + 7 * point.replica
    return PROTOCOLS[study.protocol].parse(params).model_dump(mode="json", exclude_none=True)


def production_runs(config: CampaignConfig, models: list[str]) -> list[RunRef]:
    refs: list[RunRef] = []
    masses = {e: config.campaign.mass_of(e) for e in config.campaign.type_map}
    for study in config.production:
        potential = potential_for(study, models)
        digests = {Path(m).name: file_digest(m) for m in potential.models}
        fields = config.field_choices(study)
        for system in study.systems:
            structure = base_structure(config, system)
            for point in study.points():
                arguments = dict(protocol=study.protocol, params=run_parameters(config, study, point),
                                 fields=fields, type_map=config.campaign.type_map, masses_amu=masses)
                # the study is part of the id: two studies may hold the same run (the paper's
                # 5 Li/ps flat deposition is in two of its figures), each written to its own group
                identifier = task_id("production", {**arguments, "potential": potential.kind, "study": study.name},
                                     [structure, *potential.models])
                name = f"{study.name}-{system}-{point.point_id[:6]}-r{point.replica}"
                output_dir = config.workdir / "production" / study.name / f"{name}-{identifier[:8]}"
                coordinates = dict(point.coordinates)
                if len(study.systems) > 1:
                    coordinates["system"] = system
                writer = store.RunWriter(config.store_path, study.name, coordinates)
                provenance = {"task_id": identifier, "model_sha256": digests, "config_hash": config.config_hash(),
                              "system": system, "structure_sha256": file_digest(structure)}
                spec = TaskSpec(identifier, "production", name, study.executor, analyze.md_with_fields,
                                dict(structure=str(structure), potential=potential, output_dir=str(output_dir),
                                     sink=writer, flush_every_frames=config.storage.flush_every_frames,
                                     provenance=provenance, compress=study.potential_kind == "model_file",
                                     **arguments),
                                output_dir, StoredRun(writer), {**arguments, "potential": potential.kind,
                                                                "models": potential.models,
                                                                "structure": str(structure)})
                refs.append(RunRef(study.name, coordinates, spec))
    return refs


def study_template(config: CampaignConfig, study: ProductionStudy) -> xr.Dataset:
    """One run's variables at the union of the shapes the study's runs declare (metadata for the store).

    Runs differ in the length of coordinates (more z-slabs in a taller box, more frames in a
    longer run); each run's coordinates must be the start of the union's, else the runs do
    not share a layout (a sweep over the timestep or the stride) and belong in separate
    studies.
    """
    declared = []
    seen = set()
    for system in study.systems:
        atoms = config.system(system).atoms
        for params in study.distinct_params():
            key = (system, json.dumps(params, sort_keys=True, default=str))
            if key not in seen:
                seen.add(key)
                declared.append(analyze.declared_dataset(atoms, study.protocol, params, config.field_choices(study),
                                                         config.campaign.type_map))
    return union_template(declared, study.name)


def union_template(datasets: list[xr.Dataset], study: str) -> xr.Dataset:
    """One run's variables at the union of the runs' coordinates (each must start the union's)."""
    longest = {dim: max(datasets, key=lambda d: d.sizes.get(dim, 0)) for dim in datasets[0].dims}
    for dataset in datasets:
        for name, coordinate in dataset.coords.items():
            union = longest[coordinate.dims[0]][name].values
            values = coordinate.values
            if len(values) > len(union) or not _starts(union, values):
                raise store.StoreError(f"study '{study}': its runs have incompatible '{name}' coordinates "
                                       f"({values[:3]}... against {union[:3]}...); a sweep over the timestep or "
                                       f"the stride belongs in separate studies")
    coords = {name: longest[coordinate.dims[0]][name] for name, coordinate in datasets[0].coords.items()}
    variables = {}
    for name, variable in datasets[0].data_vars.items():
        shape = tuple(len(coords[d]) if d in coords else variable.sizes[d] for d in variable.dims)
        text = variable.dtype.kind in ("U", "O", "T")
        fill = "" if text else np.nan if variable.dtype.kind == "f" else 0
        variables[name] = (variable.dims, np.full(shape, fill, dtype=object if text else variable.dtype),
                           variable.attrs)
    return xr.Dataset(variables, coords=coords)


def _starts(union: np.ndarray, values: np.ndarray) -> bool:
    head = union[:len(values)]
    if values.dtype.kind == "f":
        return bool(np.allclose(head, values, rtol=0, atol=1e-6, equal_nan=True))
    return bool(np.array_equal(head, values))


def allocate_studies(config: CampaignConfig) -> dict[str, store.Allocation]:
    """Every production study's group, allocated (or grown) before any of its runs starts."""
    allocations = {}
    for study in config.production:
        allocations[study.name] = store.allocate_study(
            config.store_path, study.name, study_axes(study), study_template(config, study),
            attrs={"protocol": study.protocol, "potential": study.potential, "params": json.dumps(study.params),
                   "config_hash": config.config_hash()})
    return allocations


def start_dask(config: CampaignConfig):
    """The Dask cluster of the analysis, with its dashboard on the configured port.

    `local` (default): `dask_workers` processes of one thread, beside the Parsl workers that
    run MD: the reductions do not grow the driver's memory, and the fields of `campaign
    analyze` run in parallel (OVITO crashes when two threads of one process evaluate at once).
    `slurm`: `dask_jobqueue.SLURMCluster(**analysis.dask_slurm)` scaled to `dask_workers` jobs.
    """
    from dask.distributed import Client, LocalCluster

    analysis = config.analysis
    dashboard = f":{analysis.dashboard_port}"
    with spared_by_ctrl_c():  # its local workers sit in the driver's process group
        if analysis.dask_cluster == "slurm":
            from dask_jobqueue import SLURMCluster

            cluster = SLURMCluster(scheduler_options={"dashboard_address": dashboard}, **analysis.dask_slurm)
            cluster.scale(jobs=analysis.dask_workers)
        else:
            cluster = LocalCluster(n_workers=analysis.dask_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=dashboard)
        return Client(cluster)


def run_row(store_path: str, study: str, coordinates: dict[str, Any]):
    """One run's row of its study's summary, read from the store (a Dask task: the run's region
    is read inside it, without a nested graph)."""
    import dask

    dataset = store.open_study(store_path, study)
    index = {dim: [list(dataset[dim].values).index(coordinates[dim])] for dim in dataset.run_status.dims}
    with dask.config.set(scheduler="synchronous"):
        return summary_table(dataset.isel(index).load())


@dataclass
class LiveSummary:
    """The follow-up of production tasks: as each run lands, the Dask cluster reduces it to its row."""

    client: Any
    store_path: str
    studies: dict[str, tuple[str, dict[str, Any]]]  # task id -> (study, coordinates)

    def __post_init__(self) -> None:
        self.rows: dict[str, list[Any]] = {}

    def __call__(self, spec: TaskSpec, outputs: dict[str, Any]) -> list[TaskSpec]:
        study, coordinates = self.studies[spec.task_id]
        self.rows.setdefault(study, []).append(self.client.submit(run_row, self.store_path, study, coordinates,
                                                                  pure=False))
        return []

    def tables(self) -> dict[str, Any]:
        import pandas as pd

        return {study: pd.concat(self.client.gather(futures), ignore_index=True)
                for study, futures in self.rows.items()}


def production_stage(config: CampaignConfig, ledger: Ledger, models: list[str], client: Any, display: Display,
                     allocations: dict[str, store.Allocation]) -> tuple[StageResult, dict[str, Any]]:
    """Run every study into its allocated group; returns the stage and each study's summary (one row per run)."""
    from dask.distributed import performance_report

    for name, allocation in allocations.items():
        if allocation.added:
            ledger.log_event("production", f"study {name} grown in place by {allocation.added}")
    refs = production_runs(config, models)
    live = LiveSummary(client, str(config.store_path), {ref.spec.task_id: (ref.study, ref.coordinates)
                                                        for ref in refs})
    with performance_report(filename=str(config.workdir / "dask-performance.html")):
        result = run_stage("production", [ref.spec for ref in refs], ledger, config.campaign.max_retries,
                           config.campaign.failure_ratio_limit, display, follow_up=live, follow_up_stages=())
        tables = live.tables()
    ledger.log_event("production", "runs stored: " + ", ".join(f"{k} {len(v)}" for k, v in tables.items()))
    return result, tables
