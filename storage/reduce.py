"""Reductions over a study's fields, lazily with Dask (flox for group-bys).

Each function takes and returns xarray objects, so it composes in a notebook:
``replica_mean(last_fraction(ds.slab_temperature, 0.2).mean("time"))``.
Computation happens when `.compute()` (or plotting) asks for values; with a
`dask.distributed` client active it runs on that cluster and shows on its dashboard.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from storage.errors import NotInStore

BOLTZMANN_EV_PER_K = 8.617333262e-5


def replica_mean(data: xr.DataArray | xr.Dataset) -> xr.DataArray | xr.Dataset:
    """Mean over replicas, ignoring missing runs (NaN)."""
    return data.mean("replica", skipna=True) if "replica" in data.dims else data


def replica_std(data: xr.DataArray | xr.Dataset) -> xr.DataArray | xr.Dataset:
    return data.std("replica", skipna=True, ddof=1) if "replica" in data.dims else data * 0


def last_fraction(data: xr.DataArray | xr.Dataset, fraction: float = 0.2) -> xr.DataArray | xr.Dataset:
    """The last `fraction` of the time axis (e.g. the steady state of a deposition)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    n = data.sizes["time"]
    return data.isel(time=slice(n - max(1, int(round(fraction * n))), n))


def filled_slabs(atoms_per_slab: xr.DataArray, fraction: float = 0.25) -> xr.DataArray:
    """True where a slab holds at least `fraction` of the fullest slab's atoms at that time:
    the slabs whose temperature means something (not a few atoms still falling)."""
    return atoms_per_slab >= fraction * atoms_per_slab.max("z")


def steady_state(data: xr.DataArray | xr.Dataset, n_valid_time: xr.DataArray,
                 fraction: float = 0.2) -> xr.DataArray | xr.Dataset:
    """The last `fraction` of each run's own frames (runs of a study may be shorter than its
    time axis: their padding is never averaged)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    index = xr.DataArray(np.arange(data.sizes["time"]), dims="time")
    first = n_valid_time - np.maximum(1, np.round(fraction * n_valid_time))
    return data.where((index >= first) & (index < n_valid_time))


def summary_table(dataset: xr.Dataset, filled_fraction: float = 0.25, fraction: float = 0.2):
    """Per run: status, final atoms, bottom and top slab temperature, bcc fraction (the last 20 %
    of the run), the deposit's height and morphology at the run's last frame, the cavity's
    volume at the first frame and at the end, and D of each MSD group with its standard
    error. A pandas table, one row per run in sweep order; computed where the data are (on
    the Dask cluster when a client is active).

    The top (bottom) slab is the highest (lowest) holding at least `filled_fraction` of the
    fullest slab's mobile atoms, so a few atoms still falling are not taken for the surface.
    """
    sweep_dims = list(dataset.run_status.dims)
    valid = dataset.n_valid_time
    columns: dict[str, xr.DataArray] = {"status": dataset.run_status}
    if "n_atoms" in dataset:
        columns["final atoms"] = dataset.n_atoms.max("time")  # atoms are only ever added
    if "slab_temperature" in dataset:
        steady = steady_state(dataset[["slab_temperature", "atoms_per_slab"]], valid, fraction)
        occupied = filled_slabs(steady.atoms_per_slab, filled_fraction)
        temperature = steady.slab_temperature.where(occupied).mean("time")
        filled = occupied.any("time")
        z = dataset.z.broadcast_like(temperature)
        top, bottom = z.where(filled).max("z"), z.where(filled).min("z")
        columns["bottom slab T (K)"] = temperature.where(z == bottom).max("z")
        columns["top slab T (K)"] = temperature.where(z == top).max("z")
        columns["atoms in top slab"] = steady.atoms_per_slab.where(z == top).max("z").mean("time")
    if "structure_fraction" in dataset:
        columns["bcc fraction"] = steady_state(dataset.structure_fraction.sel(structure="bcc"), valid,
                                               fraction).mean("time")
    if "deposit_height" in dataset:  # where each run ended (a tip run stops at a height)
        last_frame = (valid - 1).clip(min=0).compute()  # one integer per run
        columns["deposit height (Å)"] = dataset.deposit_height.isel(time=last_frame)
        columns["morphology"] = dataset.morphology.isel(time=last_frame)
    if "cavity_volume" in dataset:
        columns["cavity, first frame (Å³)"] = dataset.cavity_volume.isel(time=0)
        columns["cavity, end (Å³)"] = steady_state(dataset.cavity_volume, valid, fraction).mean("time")
    if "diffusion_coefficient" in dataset:
        for group in dataset.group.values:
            columns[f"D {group} (Å²/ps)"] = dataset.diffusion_coefficient.sel(group=group)
            columns[f"D {group} stderr"] = dataset.diffusion_coefficient_stderr.sel(group=group)
    computed = xr.Dataset({k: v.reset_coords(drop=True) for k, v in columns.items()}).compute()
    table = computed.to_dataframe(dim_order=sweep_dims)[list(columns)]  # rows in sweep order
    table["status"] = table["status"].map({0: "missing", 1: "ok", 2: "failed", 3: "running"})
    return table.reset_index()[sweep_dims + list(columns)] if sweep_dims else table


def time_window(data: xr.DataArray | xr.Dataset, start_ps: float, end_ps: float) -> xr.DataArray | xr.Dataset:
    return data.sel(time=slice(start_ps, end_ps))


def profile_at(data: xr.DataArray, time_ps: float) -> xr.DataArray:
    """A z-profile at the frame nearest to `time_ps`."""
    return data.sel(time=time_ps, method="nearest")


def group_mean(data: xr.DataArray, by: str, keep: tuple[str, ...] = ()) -> xr.DataArray:
    """Mean within each value of `by` (a sweep coordinate) over every dimension but `keep`.

    `group_mean(profiles, "temperature", keep=("z",))` gives one z-profile per temperature,
    averaged over rates and replicas. xarray hands the group-by to flox when it is installed.
    """
    # A dimension that is grouped over is reduced by the groupby itself; naming it again
    # made flox look for the kept dimensions in the grouped chunks and fail.
    return data.groupby(by).mean(dim=[d for d in data.dims if d not in keep and d != by], skipna=True)


def phase_fraction_series(dataset: xr.Dataset, structure: str = "bcc") -> xr.DataArray:
    """Fraction of one a-CNA structure over time, averaged over replicas."""
    return replica_mean(dataset.structure_fraction.sel(structure=structure))


def arrhenius_fit(temperature_k: np.ndarray, diffusion: np.ndarray) -> tuple[float, float]:
    """Fit D = D0 exp(-Ea / kT): returns (D0 in D's units, Ea in eV); ignores non-positive D."""
    temperature_k, diffusion = np.asarray(temperature_k, float), np.asarray(diffusion, float)
    usable = np.isfinite(diffusion) & (diffusion > 0)
    if usable.sum() < 2:
        raise ValueError("an Arrhenius fit needs positive D at two temperatures or more")
    slope, intercept = np.polyfit(1.0 / (BOLTZMANN_EV_PER_K * temperature_k[usable]), np.log(diffusion[usable]), 1)
    return float(np.exp(intercept)), float(-slope)


def checked_sel(data: xr.DataArray, **coordinates: Any) -> xr.DataArray:
    """`data.sel(...)` that says which values exist when one does not (NotInStore)."""
    for name, value in coordinates.items():
        if name not in data.coords:
            raise NotInStore(f"'{data.name}' has no coordinate '{name}'; it has: {', '.join(data.coords)}")
        known = data[name].values.tolist()
        if value not in known:
            raise NotInStore(f"no {name} '{value}' in '{data.name}'; it has: {', '.join(map(str, known))}")
    return data.sel(**coordinates)
