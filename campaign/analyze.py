"""`campaign analyze`: fields computed after the fact, into the campaign store, on the Dask cluster.

* From a study's stored trajectories (a study with the `trajectory` field): every complete
  run's kept frames through the fields asked for, into a study of their own (`--into`,
  default `<study>_analyzed`) with the same sweep, without running MD again.
* From an external trajectory (a LAMMPS text dump, extended XYZ, an ASE `.traj`): its
  frames through the fields, into a study at the sweep coordinates given (`--at
  temperature=300`), grown in place by each new ingest.

A field's parameters are the config's (`analysis` settings, or the study's own); the Dask
tasks read, compute and write each run where they run, and the driver only lays out the
study from the shapes they report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import xarray as xr

from campaign.config import CampaignConfig
from campaign.production import union_template
from storage import fields as store
from storage.layout import SweepAxes
from tasks.analyze import analyze_frames, periodic_along_z
from tasks.fields.trajectory import frames_from
from tasks.frame import frame_to_atoms
from tasks.trajectories import read_frames


def _periodic_z(frames: list, type_map: Sequence[str], protocol: str) -> bool:
    return periodic_along_z(frame_to_atoms(frames[0], type_map), protocol)


def stored_run_fields(store_path: str, study: str, index: Mapping[str, int], fields: list[tuple[str, dict]],
                      type_map: list[str], masses: list[float]) -> xr.Dataset:
    """One run's fields from its stored trajectory (a Dask task)."""
    import dask

    dataset = store.open_study(store_path, study)
    with dask.config.set(scheduler="synchronous"):
        run = dataset[[v for v in dataset.data_vars if v.startswith("trajectory_")]].isel(index).load()
    frames = frames_from(run, masses)
    return analyze_frames(frames, fields, _periodic_z(frames, type_map, dataset.attrs.get("protocol", "")), type_map)


def _layout(dataset: xr.Dataset) -> xr.Dataset:
    """The shape of a computed run (no values), for laying out the study."""
    return xr.Dataset({name: (v.dims, np.empty(v.shape, dtype=v.dtype), v.attrs)
                       for name, v in dataset.data_vars.items()},
                      coords=dataset.coords)


def _write(store_path: str, study: str, coordinates: dict[str, Any], dataset: xr.Dataset,
           provenance: dict[str, Any]) -> None:
    store.RunWriter(store_path, study, coordinates).final(
        {n: v.values for n, v in dataset.data_vars.items()}, True, dataset.sizes.get("time", 0), provenance)


def recompute(config: CampaignConfig, client: Any, study: str, fields: Sequence[str], into: str | None = None) -> int:
    """Fields of every complete run of `study` from its stored trajectory, into study `into`; runs done."""
    into = into or f"{study}_analyzed"
    source = store.open_study(config.store_path, study)
    if "trajectory_positions" not in source:
        raise store.StoreError(f"study '{study}' stored no trajectory: add the 'trajectory' field to its fields")
    choices = [config.field_choice(name) for name in fields]
    axes = store.stored_axes(store.open_root(config.store_path)[study])
    status = source.run_status.values
    type_map = config.campaign.type_map
    masses = [config.campaign.mass_of(e) for e in type_map]
    runs = [dict(zip(axes.dims, index)) for index in zip(*np.nonzero(status == store.RUN_COMPLETE))]
    futures = client.map(stored_run_fields, [str(config.store_path)] * len(runs), [study] * len(runs), runs,
                         [choices] * len(runs), [type_map] * len(runs), [masses] * len(runs), pure=False)
    layouts = client.gather(client.map(_layout, futures))
    store.allocate_study(config.store_path, into, axes, union_template(layouts, into),
                         attrs={"source_study": study, "fields": json.dumps([n for n, _ in choices])})
    coordinates = [{dim: axes.dims[dim][i] for dim, i in run.items()} for run in runs]
    provenance = [{"source_study": study, "computed_from": "stored trajectory"}] * len(runs)
    client.gather(client.map(_write, [str(config.store_path)] * len(runs), [into] * len(runs), coordinates, futures,
                             provenance))
    return len(runs)


def ingest(config: CampaignConfig, path: str | Path, format: str, into: str, at: Mapping[str, Any],
           fields: Sequence[str], timestep_ps: float | None = None, protocol: str = "") -> dict[str, Any]:
    """The fields of an external trajectory, into study `into` at sweep coordinates `at`."""
    masses = {e: config.campaign.mass_of(e) for e in config.campaign.type_map}
    frames = read_frames(path, format, config.campaign.type_map, masses, timestep_ps)
    type_map = config.campaign.type_map
    dataset = analyze_frames(frames, [config.field_choice(name) for name in fields],
                             _periodic_z(frames, type_map, protocol), type_map)
    coordinates = {**{k: v for k, v in at.items() if k != "replica"}, "replica": int(at.get("replica", 0))}
    axes = SweepAxes({k: [v] for k, v in coordinates.items()}, {})
    store.allocate_study(config.store_path, into, axes, _layout(dataset),
                         attrs={"source": "external trajectories"})
    _write(str(config.store_path), into, coordinates, dataset, {"source_file": str(Path(path).resolve()),
                                                                 "format": format, "frames": len(frames)})
    return coordinates
