"""One Zarr v3 store per campaign (`<workdir>/fields.zarr`), one group per production study.

Layout of a study group, e.g. ``deposition/``:

* sweep dimensions first, one per swept parameter (``temperature``, ``rate``, ...) and
  ``replica``; a `zip:` group of the sweep is one dimension named after its first parameter,
  its other parameters are coordinates along it (``falling_speed(rate)``), so no invalid
  combination is ever allocated;
* then the field dimensions: ``time`` (ps), ``z`` (slab centres, Å), ``structure``, ``lag``,
  ``group``, ``r``, ...;
* ``run_status`` (sweep dims): 0 not written, 1 complete, 2 failed; ``n_valid_time``: how many
  time entries the run filled. Runs of different length are padded to the longest with NaN:
  a missing or partial run reads as NaN plus its status, never as zeros.

The study is allocated once from the expanded sweep (metadata only, `compute=False`), and
consolidated then; afterwards a run writes only its own chunks (`region=`) and changes no
metadata, so readers always see current shapes and no re-consolidation is ever needed.
Chunks are one run wide along every sweep dimension, so two runs never share a chunk
(Zarr has no inter-process locks; shared chunks lose data under concurrent writes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr
import zarr

from storage.errors import NotInStore, StoreCorrupt, StoreError, StoreNotFound
from storage.layout import LayoutError, SweepAxes

SCHEMA_VERSION = 1
RUN_MISSING, RUN_COMPLETE, RUN_FAILED = 0, 1, 2


def _sweep_coordinates(axes: SweepAxes) -> dict[str, Any]:
    coordinates: dict[str, Any] = {dim: (dim, np.asarray(values)) for dim, values in axes.dims.items()}
    for name, (dim, values) in axes.companions.items():
        coordinates[name] = (dim, np.asarray(values))
    return coordinates


def _is_text(dtype: np.dtype) -> bool:
    return dtype.kind in ("U", "O", "T")


def _storable_coordinates(coords: Mapping[str, Any]) -> dict[str, Any]:
    """Text coordinates as variable-length strings: fixed-width unicode has no Zarr v3 specification."""
    result = {}
    for name, coordinate in coords.items():
        variable = coordinate.variable if hasattr(coordinate, "variable") else xr.Variable(*coordinate)
        if _is_text(variable.dtype):
            variable = variable.astype(object)
        result[name] = variable
    return result


def allocate_study(store: str | Path, study: str, axes: SweepAxes, template: xr.Dataset,
                   attrs: Mapping[str, Any] | None = None) -> None:
    """Create the study group (metadata only) from one run's template dataset.

    `template` holds every field of one run with its full field dimensions (time padded to
    the longest run); its values are not written. Re-allocating an existing study with the
    same layout is a no-op; a different layout is an error (never silently overwritten).
    """
    import dask.array

    store = Path(store)
    sweep_dims = list(axes.dims)
    if set(sweep_dims) & set(template.dims):
        raise StoreError(f"field dimensions {sorted(set(sweep_dims) & set(template.dims))} clash with sweep dimensions")
    variables = {}
    for name, variable in template.data_vars.items():
        shape = axes.shape + variable.shape
        chunks = (1,) * len(sweep_dims) + variable.shape
        text = _is_text(variable.dtype)
        data = dask.array.full(shape, "" if text else np.nan, dtype=object if text else np.float64, chunks=chunks)
        variables[name] = (sweep_dims + list(variable.dims), data, dict(variable.attrs))
    variables["run_status"] = (sweep_dims, dask.array.zeros(axes.shape, dtype=np.int8, chunks=(1,) * len(sweep_dims)),
                               {"long_name": "0 not written, 1 complete, 2 failed"})
    variables["n_valid_time"] = (sweep_dims, dask.array.zeros(axes.shape, dtype=np.int64,
                                                               chunks=(1,) * len(sweep_dims)),
                                 {"long_name": "time entries filled by the run; later ones are padding (NaN)"})
    coordinates = _storable_coordinates({**_sweep_coordinates(axes),
                                         **{k: v for k, v in template.coords.items() if k not in sweep_dims}})
    dataset = xr.Dataset(variables, coords=coordinates,
                         attrs={**(attrs or {}), "schema_version": SCHEMA_VERSION, "study": study,
                                "sweep_dims": json.dumps(sweep_dims)})
    if (store / study / "zarr.json").exists():
        existing = xr.open_zarr(store, group=study, consolidated=False)
        same = dict(existing.sizes) == dict(dataset.sizes) and set(existing.data_vars) == set(dataset.data_vars)
        same = same and all(np.array_equal(np.asarray(existing[dim].values), np.asarray(values))
                            for dim, values in axes.dims.items())
        if not same:
            raise StoreError(f"study '{study}' in {store} exists with another layout "
                             f"({dict(existing.sizes)}, sweep {json.loads(existing.attrs['sweep_dims'])}: "
                             f"{ {d: existing[d].values.tolist() for d in axes.dims} }); "
                             f"use a new study name or a new workdir")
        return
    dataset.to_zarr(store, group=study, mode="w", compute=False, zarr_format=3, consolidated=False)
    _write_root_attrs(store)
    zarr.consolidate_metadata(str(store))


def _write_root_attrs(store: Path) -> None:
    root = zarr.open_group(str(store), mode="a", zarr_format=3)
    root.attrs.update({"schema_version": SCHEMA_VERSION, "created_by": "dendrite-campaign"})


def write_run(store: str | Path, study: str, axes: SweepAxes, parameters: Mapping[str, Any], run: xr.Dataset,
              status: int = RUN_COMPLETE) -> None:
    """Write one run's fields into its own region (chunks no other run touches)."""
    store = Path(store)
    try:
        region = axes.region(parameters)
    except LayoutError as error:
        raise StoreError(str(error)) from None
    existing = xr.open_zarr(store, group=study, consolidated=False)
    payload = {}
    n_valid = 0
    for name, variable in run.data_vars.items():
        if name not in existing:
            raise StoreError(f"field '{name}' was not allocated in study '{study}'")
        target = existing[name]
        field_dims = [d for d in target.dims if d not in region]
        if list(variable.dims) != field_dims:
            raise StoreError(f"field '{name}' has dims {variable.dims}, the store expects {tuple(field_dims)}")
        values = np.asarray(variable.values)
        if _is_text(values.dtype):
            values = values.astype(object)
        full_shape = tuple(existing.sizes[d] for d in field_dims)
        if values.shape != full_shape:  # shorter run: pad along time with NaN
            if "time" not in field_dims or any(s > f for s, f in zip(values.shape, full_shape)):
                raise StoreError(f"field '{name}' has shape {values.shape}, the store holds at most {full_shape}")
            text = _is_text(values.dtype)
            padded = np.full(full_shape, "" if text else np.nan, dtype=object if text else np.float64)
            padded[tuple(slice(0, s) for s in values.shape)] = values
            values = padded
        if "time" in variable.dims:
            n_valid = max(n_valid, variable.sizes["time"])
        payload[name] = (list(region) + field_dims, values[(np.newaxis,) * len(region)])
    sizes = (1,) * len(region)
    payload["run_status"] = (list(region), np.full(sizes, status, dtype=np.int8))
    payload["n_valid_time"] = (list(region), np.full(sizes, n_valid, dtype=np.int64))
    xr.Dataset(payload).to_zarr(store, group=study, region=region, mode="r+", consolidated=False)


def open_study(store: str | Path, study: str, chunks: Any = None) -> xr.Dataset:
    """A study's fields as a lazy, dask-backed Dataset (raises StoreError with the reason)."""
    root = open_root(store)
    if study not in root:
        raise NotInStore(f"no study '{study}' in {store}; it holds: {', '.join(sorted(root.group_keys())) or 'none'}")
    # Consolidated metadata is rewritten at every allocation, the only time metadata changes.
    # Default chunks are the stored ones (one run each): dask's "auto" cannot size text fields.
    try:
        return xr.open_zarr(store, group=study, consolidated=None, chunks={} if chunks is None else chunks)
    except (ValueError, KeyError, OSError) as error:
        raise StoreCorrupt(f"{Path(store) / study}: cannot be read ({type(error).__name__}: {error})") from None


def open_root(store: str | Path) -> zarr.Group:
    """The store's root group, checked: present, readable, of this schema version."""
    store = Path(store)
    if not (store / "zarr.json").exists():
        raise StoreNotFound(f"no field store at {store}: has a production stage run in this workdir?")
    try:
        root = zarr.open_group(str(store), mode="r")
        version = root.attrs.get("schema_version")
    except (ValueError, KeyError, OSError) as error:
        raise StoreCorrupt(f"{store / 'zarr.json'}: cannot be read ({type(error).__name__}: {error})") from None
    if version != SCHEMA_VERSION:
        raise StoreCorrupt(f"{store} has schema version {version}; this version of dendrite-campaign reads "
                           f"version {SCHEMA_VERSION}")
    return root


def studies(store: str | Path) -> list[str]:
    return sorted(open_root(store).group_keys())


def complete_runs(dataset: xr.Dataset) -> xr.Dataset:
    """The numeric fields with every run that is not complete masked to NaN."""
    complete = dataset.run_status == RUN_COMPLETE
    masked = dataset.copy()
    for name, variable in dataset.data_vars.items():
        if name not in ("run_status", "n_valid_time") and not _is_text(variable.dtype):
            masked[name] = variable.where(complete)
    return masked  # text fields (morphology labels) stay as written: '' where a run never wrote

