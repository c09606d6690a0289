"""One Zarr v3 store per campaign, one group per production study, written by the runs themselves.

Layout of a study group, e.g. ``deposition/``:

* sweep dimensions first, one per swept parameter (``temperature``, ``rate``, ...), then
  ``replica`` (and ``system`` in front when the study has several structures); a `zip:`
  group of the sweep is one dimension named after its first parameter, its other parameters
  are coordinates along it (``falling_speed(rate)``), so no invalid combination exists;
* then the field dimensions: ``time`` (ps), ``z`` (slab centres, Å, with ``z_bounds``),
  ``structure``, ``lag``, ``group``, ``r``, ...;
* per run: ``run_status`` (0 not written, 1 complete, 2 failed, 3 running: partial),
  ``n_valid_time`` (time entries the run filled; later ones are NaN or ''), and
  ``provenance`` (JSON text: task id, potential and model digest, code versions, config
  hash, host, wall time).

A study is allocated, metadata only, before its first run, from what its fields declare
for the whole sweep (`template`: one run's variables with the union of the runs'
coordinates). Every variable is one chunk (one file) per run, for every dtype, text
included, so no two runs ever touch one file; a run streaming its frames rewrites only its
own chunks. (Sharding the time axis inside a run's file was measured 4-7x slower to write
and 12x slower to read through Dask, for no gain in file count.) Runs write their fields first and their
status last, so a run killed mid-write reads as missing (0) or running (3), never as
complete. Adding sweep values later grows the study in place (new values are appended
along their dimension: existing chunks are untouched), and so are the variables of fields added later; a field
whose layout changed is refused.

Metadata changes only at allocation and growth, and is consolidated then, so readers open
the store quickly and always see current shapes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import xarray as xr
import zarr
from numcodecs import VLenUTF8
from zarr.codecs import BytesCodec, VLenUTF8Codec
from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding

from storage.errors import NotInStore, StoreCorrupt, StoreError, StoreNotFound
from storage.layout import LayoutError, SweepAxes

SCHEMA_VERSION = 2
RUN_MISSING, RUN_COMPLETE, RUN_FAILED, RUN_RUNNING = 0, 1, 2, 3
RUN_STATUS = {RUN_MISSING: "missing", RUN_COMPLETE: "ok", RUN_FAILED: "failed", RUN_RUNNING: "running"}
PER_RUN = ("run_status", "n_valid_time", "provenance")
#: Chunk files named `c.<i>.<j>...` in the array's directory: no directory per sweep index to create.
CHUNK_KEYS = {"name": "default", "separator": "."}
CONVENTIONS = "CF-1.10"


def _is_text(dtype: Any) -> bool:
    return np.dtype(dtype).kind in ("U", "O", "T") if not isinstance(dtype, str) else dtype == "text"


@contextlib.contextmanager
def quiet_zarr() -> Iterator[None]:
    """Consolidated metadata is deliberate here (fast opens); zarr warns that it is not yet in the
    v3 specification, on every open. "blocks" reads one value of the first sweep dimension per
    chunk, which splits the few values of a zipped coordinate (`falling_speed` along `rate`,
    stored as one chunk), and xarray warns of it on every open. Both silenced where they arise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        warnings.filterwarnings("ignore", message="The specified chunks separate the stored chunks")
        yield


def _layout_of(template: xr.Dataset) -> dict[str, Any]:
    """What must not change once a study is allocated: each variable's field dims, shape, dtype."""
    return {name: {"dims": list(v.dims), "shape": list(v.shape), "dtype": "text" if _is_text(v.dtype) else str(v.dtype)}
            for name, v in template.data_vars.items()}


def _create(group: zarr.Group, name: str, shape: tuple[int, ...], dims: list[str], dtype: Any,
            sweep_dims: int, attrs: Mapping[str, Any]) -> zarr.Array:
    """An array chunked one run wide along the sweep dims, one chunk (one file) per run.

    Arrays are stored uncompressed (numeric: the `bytes` codec alone; text: `vlen-utf8`), so
    that `RunWriter` can put a run's chunk in place as fast as `np.save`, exactly as zarr
    encodes it (benchmarks/store_throughput.py: zarr's own write path costs 1.5-2.5 ms per
    chunk, and a run writes 10-20 of them).
    """
    run_shape = tuple(shape[sweep_dims:])
    chunks = (1,) * sweep_dims + tuple(max(1, n) for n in run_shape)
    if _is_text(dtype):
        array = group.create_array(name, shape=shape, chunks=chunks, dtype=str, fill_value="", dimension_names=dims,
                                   compressors=None, filters=None, chunk_key_encoding=CHUNK_KEYS)
    else:
        dtype = np.dtype(dtype)
        array = group.create_array(name, shape=shape, chunks=chunks, dtype=dtype.newbyteorder("<"),
                                   fill_value=np.nan if dtype.kind == "f" else 0, dimension_names=dims,
                                   compressors=None, filters=None, chunk_key_encoding=CHUNK_KEYS)
    array.attrs.update(dict(attrs))
    return array


def _coordinate(group: zarr.Group, name: str, values: np.ndarray, dims: list[str], attrs: Mapping[str, Any]) -> None:
    values = np.asarray(values)
    text = _is_text(values.dtype)
    array = group.create_array(name, shape=values.shape, chunks=values.shape or None,
                               dtype=str if text else values.dtype,
                               fill_value="" if text else None, dimension_names=dims, overwrite=True)
    array[...] = values.astype(object) if text else values
    array.attrs.update(dict(attrs))


def _write_sweep_coordinates(group: zarr.Group, axes: SweepAxes) -> None:
    for dim, values in axes.dims.items():
        _coordinate(group, dim, np.asarray(values), [dim], {"long_name": f"sweep: {dim}"})
    for name, (dim, values) in axes.companions.items():
        _coordinate(group, name, np.asarray(values), [dim], {"long_name": f"sweep: {name} (zipped with {dim})"})


def stored_axes(group: zarr.Group) -> SweepAxes:
    """The sweep axes as the store holds them (values in the order they were allocated)."""
    dims = {d: group[d][...].tolist() for d in json.loads(group.attrs["sweep_dims"])}
    companions = {name: (dim, group[name][...].tolist()) for name, dim in json.loads(group.attrs["companions"]).items()}
    return SweepAxes(dims, companions)


@dataclass(frozen=True)
class Allocation:
    """What `allocate_study` did: created the study, grew it (by new sweep values, or the
    variables of new fields), or neither."""

    created: bool
    added: dict[str, list[Any]] = field(default_factory=dict)
    new_variables: list[str] = field(default_factory=list)


def allocate_study(store: str | Path, study: str, axes: SweepAxes, template: xr.Dataset,
                   attrs: Mapping[str, Any] | None = None) -> Allocation:
    """Create the study group (metadata only) for the sweep `axes`, or grow it to them.

    `template` is one run's dataset as its fields declare it (every variable with its field
    dims; the coordinates the union over the sweep's runs); its values are not written. An
    existing study keeps its sweep values and their order; values it lacks are appended
    (adding a temperature, a replica), and so are the variables of fields it lacks (empty for
    the runs so far); a variable whose layout changed is a StoreError.
    """
    store = Path(store)
    sweep_dims = list(axes.dims)
    clash = set(sweep_dims) & set(template.dims)
    if clash:
        raise StoreError(f"field dimensions {sorted(clash)} clash with sweep dimensions")
    with quiet_zarr():
        root = zarr.open_group(str(store), mode="a", zarr_format=3)
        root.attrs.update({"schema_version": SCHEMA_VERSION, "created_by": "dendrite-campaign",
                           "Conventions": CONVENTIONS})
        if study in root:
            allocation = _grow(root[study], study, axes, template)
        else:
            _create_study(root.create_group(study), study, axes, template, attrs or {})
            allocation = Allocation(created=True)
        zarr.consolidate_metadata(str(store))
    for key in [k for k in _LAYOUTS if k[1] == study and Path(k[0]).resolve() == store.resolve()]:
        del _LAYOUTS[key]
    return allocation


def _create_study(group: zarr.Group, study: str, axes: SweepAxes, template: xr.Dataset,
                  attrs: Mapping[str, Any]) -> None:
    sweep_dims = list(axes.dims)
    group.attrs.update({**attrs, "schema_version": SCHEMA_VERSION, "study": study, "Conventions": CONVENTIONS,
                        "sweep_dims": json.dumps(sweep_dims), "companions": json.dumps(
                            {name: dim for name, (dim, _) in axes.companions.items()}),
                        "field_layout": json.dumps(_layout_of(template))})
    _write_sweep_coordinates(group, axes)
    for name, coordinate in template.coords.items():
        _coordinate(group, name, coordinate.values, list(coordinate.dims), coordinate.attrs)
    for name, variable in template.data_vars.items():
        _create(group, name, axes.shape + variable.shape, sweep_dims + list(variable.dims), variable.dtype,
                len(sweep_dims), variable.attrs)
    _create(group, "run_status", axes.shape, sweep_dims, "int8", len(sweep_dims),
            {"long_name": "0 not written, 1 complete, 2 failed, 3 running (partial)",
             "flag_values": [0, 1, 2, 3], "flag_meanings": "missing complete failed running"})
    _create(group, "n_valid_time", axes.shape, sweep_dims, "int32", len(sweep_dims),
            {"long_name": "time entries the run filled; later ones are padding (NaN)"})
    _create(group, "provenance", axes.shape, sweep_dims, "text", len(sweep_dims),
            {"long_name": "JSON: task id, potential, model digest, code versions, config hash, host, wall time"})


def _grow(group: zarr.Group, study: str, axes: SweepAxes, template: xr.Dataset) -> Allocation:
    """Append new sweep values, and add the variables of fields the study did not have."""
    stored = stored_axes(group)
    if list(stored.dims) != list(axes.dims):
        raise StoreError(f"study '{study}' exists with sweep dimensions {list(stored.dims)}, the config now sweeps "
                         f"{list(axes.dims)}: use a new study name")
    old_layout, new_layout = json.loads(group.attrs["field_layout"]), _layout_of(template)
    changed = sorted(n for n in set(old_layout) & set(new_layout) if old_layout[n] != new_layout[n])
    if changed:
        detail = "; ".join(f"{n}: {old_layout[n]} -> {new_layout[n]}" for n in changed[:4])
        raise StoreError(f"study '{study}' exists with another field layout ({detail}): the fields' parameters or "
                         f"the runs' length changed; use a new study name")
    for name, coordinate in template.coords.items():
        if name in group and not np.array_equal(np.asarray(group[name][...]), np.asarray(coordinate.values)):
            raise StoreError(f"study '{study}' exists with other '{name}' coordinates: use a new study name")
    added = {dim: [v for v in values if v not in stored.dims[dim]] for dim, values in axes.dims.items()}
    added = {dim: values for dim, values in added.items() if values}
    for name, (dim, values) in axes.companions.items():
        known = dict(zip(stored.dims[dim], stored.companions[name][1]))
        conflicting = [v for d, v in zip(axes.dims[dim], values) if d in known and known[d] != v]
        if conflicting:
            raise StoreError(f"study '{study}': {name} {conflicting} for existing {dim} values differ from the "
                             f"stored {stored.companions[name][1]}: use a new study name")
    grown = stored
    if added:
        grown_dims = {dim: stored.dims[dim] + added.get(dim, []) for dim in stored.dims}
        grown_companions = {}
        for name, (dim, values) in axes.companions.items():
            by_value = {**dict(zip(axes.dims[dim], values)), **dict(zip(stored.dims[dim],
                                                                        stored.companions[name][1]))}
            grown_companions[name] = (dim, [by_value[d] for d in grown_dims[dim]])
        grown = SweepAxes(grown_dims, grown_companions)
        for name in [*old_layout, *PER_RUN]:
            array = group[name]
            array.resize(grown.shape + tuple(array.shape[len(grown.dims):]))
        _write_sweep_coordinates(group, grown)
    new_variables = [n for n in new_layout if n not in old_layout]
    for name in template.coords:
        if name not in group:
            coordinate = template.coords[name]
            _coordinate(group, name, coordinate.values, list(coordinate.dims), coordinate.attrs)
    for name in new_variables:  # a field added to the study: its arrays, empty for the runs so far
        variable = template[name]
        _create(group, name, grown.shape + variable.shape, list(grown.dims) + list(variable.dims), variable.dtype,
                len(grown.dims), variable.attrs)
    if new_variables:
        group.attrs["field_layout"] = json.dumps({**old_layout, **{n: new_layout[n] for n in new_variables}})
    return Allocation(created=False, added=added, new_variables=new_variables)


@dataclass(frozen=True)
class _ArrayInfo:
    """What writing a run's chunk of an array needs, read once from the store's metadata."""

    field_shape: tuple[int, ...]
    dtype: np.dtype | None  # None: text
    fill: Any
    raw: bool  # stored as `RunWriter` writes chunks (else zarr writes them)


@dataclass(frozen=True)
class _StudyLayout:
    axes: SweepAxes
    arrays: dict[str, _ArrayInfo]


#: Per process: a study's layout, read once (workers write many runs); dropped at allocation.
_LAYOUTS: dict[tuple[str, str], _StudyLayout] = {}


def _study_layout(store: str, study: str) -> _StudyLayout:
    key = (store, study)
    if key not in _LAYOUTS:
        with quiet_zarr():
            group = zarr.open_group(store, mode="r", use_consolidated=True)[study]
        axes = stored_axes(group)
        arrays = {}
        for name, array in group.arrays():
            if name in axes.dims or name in axes.companions:
                continue
            text = _is_text(array.dtype)
            codecs = [(VLenUTF8Codec(),)] if text else [(BytesCodec(endian="little"),), (BytesCodec(endian=None),)]
            raw = (array.metadata.codecs in codecs and array.chunks[:len(axes.dims)] == (1,) * len(axes.dims)
                   and array.chunks[len(axes.dims):] == tuple(max(1, n) for n in array.shape[len(axes.dims):])
                   and array.metadata.chunk_key_encoding == DefaultChunkKeyEncoding(separator="."))
            arrays[name] = _ArrayInfo(tuple(array.shape[len(axes.dims):]), None if text else np.dtype(array.dtype),
                                      array.fill_value if not text else "", raw)
        _LAYOUTS[key] = _StudyLayout(axes, arrays)
    return _LAYOUTS[key]


class RunWriter:
    """Writes one run into its own region of a study, from wherever the run executes.

    Picklable (a path, a study, the run's sweep coordinates): the driver builds it, a Parsl
    worker uses it. The region is looked up by value in the stored coordinates, so it is
    right even after the study grew. Chunks are put in place exactly as zarr encodes them
    (a test compares the bytes), under a temporary name and renamed: a reader never sees
    half a chunk, and a run writes without zarr's per-chunk overhead.
    """

    def __init__(self, store: str | Path, study: str, coordinates: Mapping[str, Any]):
        self.store, self.study, self.coordinates = str(store), study, dict(coordinates)

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self.store, "study": self.study, "coordinates": self.coordinates}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    @property
    def layout(self) -> _StudyLayout:
        return _study_layout(self.store, self.study)

    @property
    def region(self) -> tuple[int, ...]:
        try:
            return tuple(r.start for r in self.layout.axes.region(self.coordinates).values())
        except LayoutError as error:
            raise StoreError(f"{self.store}/{self.study}: {error}") from None

    def status(self) -> int:
        path = self._chunk_path("run_status")
        return int(np.frombuffer(path.read_bytes(), dtype=self.layout.arrays["run_status"].dtype)[0]) \
            if path.exists() else RUN_MISSING

    def write(self, values: Mapping[str, Any], status: int, n_valid_time: int,
              provenance: Mapping[str, Any] | None = None) -> None:
        """Write variables (each with its field dims, as long as the study's or shorter: a shorter
        run, a smaller box's fewer slabs; the rest reads as the fill value), then `provenance`,
        `n_valid_time` and, last, `status`."""
        arrays = self.layout.arrays
        region = self.region
        for name, value in values.items():
            if name in PER_RUN:
                raise StoreError(f"'{name}' is written by the store itself")
            if name not in arrays:
                raise StoreError(f"field '{name}' was not allocated in study '{self.study}'")
            value = np.asarray(value)
            info = arrays[name]
            if value.ndim != len(info.field_shape) or any(v > f for v, f in zip(value.shape, info.field_shape)):
                raise StoreError(f"field '{name}' has shape {value.shape}, the store holds {info.field_shape}")
            self._put(name, value, region)
        if provenance is not None:
            self._put("provenance", np.asarray(json.dumps(dict(provenance), default=str, sort_keys=True),
                                               dtype=object), region)
        self._put("n_valid_time", np.asarray(n_valid_time), region)
        self._put("run_status", np.asarray(status), region)

    def partial(self, values: Mapping[str, Any], n_valid_time: int) -> None:
        """The time series of a run still going (status 3, running)."""
        self.write(values, RUN_RUNNING, n_valid_time)

    def final(self, values: Mapping[str, Any], ok: bool, n_valid_time: int, provenance: Mapping[str, Any]) -> None:
        """The whole run, complete (1) or failed (2), with its provenance."""
        self.write(values, RUN_COMPLETE if ok else RUN_FAILED, n_valid_time, provenance)

    def _chunk_path(self, name: str) -> Path:
        info = self.layout.arrays[name]
        return Path(self.store, self.study, name, ".".join(["c", *map(str, self.region),
                                                            *("0" for _ in info.field_shape)]))

    def _put(self, name: str, value: np.ndarray, region: tuple[int, ...]) -> None:
        """The run's chunk of an array: the whole chunk (padded with the fill value), encoded as
        zarr encodes it, written under a temporary name and renamed."""
        info = self.layout.arrays[name]
        if not info.raw:  # a layout this writer did not make: zarr writes it
            with quiet_zarr():
                array = zarr.open_array(self.store, path=f"{self.study}/{name}", mode="r+")
            array[region + tuple(slice(0, n) for n in value.shape)] = value
            return
        if info.dtype is not None and value.shape == info.field_shape and value.dtype == info.dtype and \
                value.flags.c_contiguous and info.dtype.byteorder in "<=|" and sys.byteorder == "little":
            encoded: Any = value  # already the chunk's bytes: written from its buffer, no copy
        else:
            chunk = np.full(info.field_shape, info.fill, dtype=object if info.dtype is None else info.dtype)
            chunk[tuple(slice(0, n) for n in value.shape)] = value if value.ndim else value.item()
            encoded = VLenUTF8().encode(chunk.ravel()) if info.dtype is None else np.ascontiguousarray(chunk)
        path = self._chunk_path(name)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
        with temporary.open("wb") as handle:
            handle.write(encoded if isinstance(encoded, bytes) else memoryview(encoded).cast("B"))
        temporary.replace(path)


def write_run(store: str | Path, study: str, coordinates: Mapping[str, Any], run: xr.Dataset,
              status: int = RUN_COMPLETE, provenance: Mapping[str, Any] | None = None) -> None:
    """Write a whole run's dataset into its region (its `time` may be shorter than the study's)."""
    n_valid = int(run.attrs.get("n_valid_time", run.sizes.get("time", 0)))
    RunWriter(store, study, coordinates).write({n: v.values for n, v in run.data_vars.items()}, status, n_valid,
                                               provenance)


def open_root(store: str | Path) -> zarr.Group:
    """The store's root group, checked: present, readable, of this schema version."""
    store = Path(store)
    if not (store / "zarr.json").exists():
        raise StoreNotFound(f"no field store at {store}: has a production stage run in this workdir?")
    try:
        with quiet_zarr():
            root = zarr.open_group(str(store), mode="r")
        version = root.attrs.get("schema_version")
    except (ValueError, KeyError, OSError) as error:
        raise StoreCorrupt(f"{store / 'zarr.json'}: cannot be read ({type(error).__name__}: {error})") from None
    if version != SCHEMA_VERSION:
        raise StoreCorrupt(f"{store} has schema version {version}; this version of dendrite-campaign reads "
                           f"version {SCHEMA_VERSION}")
    return root


def open_study(store: str | Path, study: str, chunks: Any = None) -> xr.Dataset:
    """A study's fields as a lazy, dask-backed Dataset (raises StoreError with the reason).

    `chunks`: dask chunks; default one per run, as stored; "blocks" reads each value of the
    first sweep dimension as one chunk (a reduction over 1,000 runs is then 25 tasks, not
    1,000: the graph, not the data, was what filled a driver's memory)."""
    root = open_root(store)
    if study not in root:
        raise NotInStore(f"no study '{study}' in {store}; it holds: {', '.join(sorted(root.group_keys())) or 'none'}")
    if chunks == "blocks":
        first, *others = json.loads(root[study].attrs["sweep_dims"])
        chunks = {first: 1, **{d: -1 for d in others}}
    try:
        with quiet_zarr():
            dataset = xr.open_zarr(store, group=study, consolidated=True, chunks={} if chunks is None else chunks)
    except (ValueError, KeyError, OSError) as error:
        raise StoreCorrupt(f"{Path(store) / study}: cannot be read ({type(error).__name__}: {error})") from None
    companions = json.loads(dataset.attrs.get("companions", "{}"))
    return dataset.set_coords([c for c in ("provenance", *companions, *(f"{d}_bounds" for d in dataset.dims))
                               if c in dataset.data_vars])


def studies(store: str | Path) -> list[str]:
    """The production studies (groups with a sweep; not the property stage's group)."""
    root = open_root(store)
    return sorted(name for name in root.group_keys() if "sweep_dims" in root[name].attrs)


def complete_runs(dataset: xr.Dataset) -> xr.Dataset:
    """The numeric fields with every run that is not complete masked to NaN."""
    complete = dataset.run_status == RUN_COMPLETE
    masked = dataset.copy()
    for name, variable in dataset.data_vars.items():
        if name not in ("run_status", "n_valid_time") and not _is_text(variable.dtype):
            masked[name] = variable.where(complete)
    return masked  # text fields (morphology labels) stay as written: '' where a run never wrote


def provenance_table(dataset: xr.Dataset):
    """One row per written run: its sweep coordinates, status and provenance (pandas)."""
    import pandas as pd

    sweep_dims = list(dataset.run_status.dims)
    status = dataset.run_status.values
    records = dataset.provenance.values if "provenance" in dataset.coords else np.full(status.shape, "")
    rows = []
    for index in np.ndindex(status.shape):
        if status[index] == RUN_MISSING:
            continue
        row = {d: dataset[d].values[i] for d, i in zip(sweep_dims, index)}
        row["status"] = RUN_STATUS.get(int(status[index]), str(status[index]))
        row.update(json.loads(str(records[index]) or "{}"))
        rows.append(row)
    return pd.DataFrame(rows)
