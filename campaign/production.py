"""Production sweeps: MD over each study's sweep, fields streamed, gathered into one Zarr store.

Each sweep point x system x replica is one Parsl task (`tasks.analyze.md_with_fields`):
LAMMPS runs the protocol with the final model (or a named model, or a classical
potential) and the analyses stream every `trajectory_stride` steps into the run's own
`fields.zarr`. When the study's runs are done, the campaign store is allocated once for the
whole sweep (the union of the runs' field coordinates: a deposition at a higher rate has a
taller box, so more z-slabs) and every run is written into its own region by the Dask
cluster, whose dashboard shows the writes and the reductions of the summary.

A study with several systems gets a `system` dimension in front of its sweep dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from campaign.config import CampaignConfig, ProductionStudy
from campaign.engine import StageResult, TaskSpec, run_stage
from campaign.ledger import Ledger, task_id
from campaign.stages import base_structure
from campaign.sweep import sweep_axes
from storage import fields as store
from storage.layout import SweepAxes
from tasks import analyze
from tasks.potentials import Potential
from tasks.protocols import PROTOCOLS


@dataclass
class RunRef:
    """Where one production run sits in its study's sweep, and its task."""

    study: str
    parameters: dict[str, Any]  # sweep coordinates (system included when the study has several)
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


def verify_run(output_dir: Path) -> dict[str, Any] | None:
    import json

    try:
        outputs = json.loads((output_dir / "result.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    if "fields" not in outputs or (outputs["fields"] and not Path(outputs["fields"], "zarr.json").exists()):
        return None
    outputs.pop("inserted_ids", None), outputs.pop("inserted_time_ps", None)
    return outputs


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
        fields = config.field_choices(study)
        for system in study.systems:
            structure = base_structure(config, system)
            for point in study.points():
                arguments = dict(protocol=study.protocol, params=run_parameters(config, study, point),
                                 fields=fields, type_map=config.campaign.type_map, masses_amu=masses)
                identifier = task_id("production", {**arguments, "potential": potential.kind},
                                     [structure, *potential.models])
                name = f"{study.name}-{system}-{point.point_id[:6]}-r{point.replica}"
                output_dir = config.workdir / "production" / study.name / f"{name}-{identifier[:8]}"
                spec = TaskSpec(identifier, "production", name, study.executor, analyze.md_with_fields,
                                dict(structure=str(structure), potential=potential, output_dir=str(output_dir),
                                     **arguments),
                                output_dir, verify_run, {**arguments, "potential": potential.kind,
                                                         "models": potential.models, "structure": str(structure)})
                coordinates = dict(point.coordinates)
                if len(study.systems) > 1:
                    coordinates["system"] = system
                refs.append(RunRef(study.name, coordinates, spec))
    return refs


def _union_template(datasets: list[xr.Dataset]) -> xr.Dataset:
    """One run's layout holding every run: the longest time axis, the union of other coordinates."""
    longest = max(datasets, key=lambda d: d.sizes.get("time", 0))
    coordinates: dict[str, np.ndarray] = {}
    for dataset in datasets:
        for dim in dataset.dims:
            if dim == "time" or dim not in dataset.coords:
                continue
            values = np.asarray(dataset[dim].values)
            merged = np.concatenate([coordinates.get(dim, values[:0]), values])
            coordinates[dim] = np.unique(np.round(merged, 6) if merged.dtype.kind == "f" else merged)
    return _on_coordinates(longest, coordinates)


def _on_coordinates(run: xr.Dataset, coordinates: dict[str, np.ndarray]) -> xr.Dataset:
    """`run` re-indexed onto the union coordinates (missing entries NaN, or '' for text)."""
    result = run
    for dim, values in coordinates.items():
        if dim not in result.dims:
            continue
        if values.dtype.kind == "f":
            result = result.reindex({dim: values}, method="nearest", tolerance=1e-5)
        else:
            result = result.reindex({dim: values})
    for name, variable in result.data_vars.items():
        if variable.dtype.kind in ("U", "O"):
            result[name] = variable.fillna("").astype(str)
    return result


def write_study(store_path: Path, study: ProductionStudy, refs: list[RunRef], outputs: dict[str, dict[str, Any]],
                client: Any) -> int:
    """Allocate the study's region of the store and write each finished run into it (on Dask)."""
    runs = [(ref, outputs[ref.spec.task_id]) for ref in refs if ref.spec.task_id in outputs]
    runs = [(ref, out) for ref, out in runs if out.get("fields")]
    if not runs:
        return 0
    datasets = [xr.open_zarr(out["fields"], consolidated=False).load() for _, out in runs]
    template = _union_template(datasets)
    axes = study_axes(study)
    store.allocate_study(store_path, study.name, axes, template,
                         attrs={"protocol": study.protocol, "potential": str(study.potential),
                                "params": str(study.params)})
    coordinates = {dim: np.asarray(template[dim].values) for dim in template.dims
                   if dim != "time" and dim in template.coords}
    futures = []
    for (ref, out), dataset in zip(runs, datasets):
        aligned = _on_coordinates(dataset, coordinates)
        status = store.RUN_COMPLETE if out["status"] == "ok" else store.RUN_FAILED
        futures.append(client.submit(store.write_run, store_path, study.name, axes, ref.parameters, aligned,
                                     status, pure=False))
    client.gather(futures)
    return len(futures)


def start_dask(config: CampaignConfig):
    """The Dask cluster of the analysis, with its dashboard on the configured port.

    `local` (default): threads in this process, beside the Parsl workers that run MD.
    `slurm`: `dask_jobqueue.SLURMCluster(**analysis.dask_slurm)` scaled to `dask_workers` jobs.
    """
    from dask.distributed import Client, LocalCluster

    analysis = config.analysis
    dashboard = f":{analysis.dashboard_port}"
    if analysis.dask_cluster == "slurm":
        from dask_jobqueue import SLURMCluster

        cluster = SLURMCluster(scheduler_options={"dashboard_address": dashboard}, **analysis.dask_slurm)
        cluster.scale(jobs=analysis.dask_workers)
    else:
        cluster = LocalCluster(n_workers=1, threads_per_worker=analysis.dask_workers, processes=False,
                               dashboard_address=dashboard)
    return Client(cluster)


def production_stage(config: CampaignConfig, ledger: Ledger, models: list[str], client: Any,
                     show_progress: bool) -> tuple[StageResult, dict[str, int]]:
    """Run every production study, then write each study into the store; returns runs written per study."""
    refs = production_runs(config, models)
    result = run_stage("production", [ref.spec for ref in refs], ledger, config.campaign.max_retries,
                       config.campaign.failure_ratio_limit, show_progress)
    written = {}
    for study in config.production:
        written[study.name] = write_study(config.store_path, study, [r for r in refs if r.study == study.name],
                                          result.outputs, client)
    ledger.log_event("production", "store written: " + ", ".join(f"{k} {v} runs" for k, v in written.items()))
    return result, written
