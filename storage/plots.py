"""Plots of a campaign's fields with matplotlib: one line per sweep point, replicas averaged."""

from __future__ import annotations

from typing import Protocol

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from storage.errors import NotInStore
from storage.reduce import checked_sel, filled_slabs, replica_mean, steady_state


class CampaignData(Protocol):
    """What the plots read of an open campaign (`storage.api.Campaign`, which makes its `Plots`)."""

    def fields(self, study: str, complete_only: bool = True, chunks: object = None) -> xr.Dataset: ...

    def field(self, study: str, variable: str, complete_only: bool = True, chunks: object = None
              ) -> xr.DataArray: ...

    def properties(self) -> xr.Dataset: ...


def plot_runs(data: xr.DataArray, along: str, ax=None, vertical: bool = False):
    """One line per combination of the dimensions other than `along` (labelled by their values)."""
    ax = ax or plt.subplots(figsize=(5, 4))[1]
    others = [d for d in data.dims if d != along]
    stacked = data.stack(run=others).compute() if others else data.expand_dims(run=[0]).compute()
    names = stacked.indexes["run"].names if others else []
    for index in range(stacked.sizes["run"]):
        curve = stacked.isel(run=index)
        values = stacked.run.values[index] if others else ()
        label = ", ".join(f"{k}={v}" for k, v in zip(names, values if isinstance(values, tuple) else (values,)))
        x, y = curve[along].values, curve.values
        ax.plot(*((y, x) if vertical else (x, y)), marker="o" if vertical else None, label=label or None)
    if names:
        ax.legend(fontsize=7)
    return ax


class Plots:
    def __init__(self, campaign: CampaignData):
        self.campaign = campaign

    def temperature_profile(self, study: str, fraction: float = 0.2, ax=None):
        """Slab temperature vs height over the last `fraction` of the run (well-filled slabs only)."""
        fields = self.campaign.fields(study, chunks="blocks")
        self.campaign.field(study, "slab_temperature", chunks="blocks")  # NotInStore if the study did not compute it
        wanted = [v for v in ("slab_temperature", "atoms_per_slab") if v in fields]
        steady = steady_state(fields[wanted], fields.n_valid_time, fraction)
        temperature = steady.slab_temperature
        if "atoms_per_slab" in fields:
            temperature = temperature.where(filled_slabs(steady.atoms_per_slab))
        data = replica_mean(temperature.mean("time"))
        ax = plot_runs(data, "z", ax, vertical=True)
        ax.set_xlabel("temperature (K)")
        ax.set_ylabel("z (Å)")
        return ax

    def phase_fractions(self, study: str, structure: str = "bcc", ax=None):
        fractions = self.campaign.field(study, "structure_fraction", chunks="blocks")
        data = replica_mean(checked_sel(fractions, structure=structure))
        ax = plot_runs(data, "time", ax)
        ax.set_xlabel("time (ps)")
        ax.set_ylabel(f"{structure} fraction (a-CNA)")
        return ax

    def msd(self, study: str, group: str = "surface", ax=None):
        data = replica_mean(checked_sel(self.campaign.field(study, "msd", chunks="blocks"), group=group))
        ax = plot_runs(data, "lag", ax)
        ax.set_xlabel("lag (ps)")
        ax.set_ylabel(f"MSD of {group} atoms (Å²)")
        return ax

    def property_curve(self, curve: str, ax=None):
        """One of the property stage's curves (`energy_per_atom_vs_volume`, ...), a line per
        potential; the phonon branches (`phonon_branch`) of a potential share its colour."""
        data = self.campaign.properties()
        names = sorted(v[len("curve_"):] for v in data.data_vars if v.startswith(f"curve_{curve}"))
        if not names:
            available = sorted({v[len("curve_"):] for v in data.data_vars if v.startswith("curve_")})
            raise NotInStore(f"no property curve '{curve}'; the curves: {', '.join(available)}")
        ax = ax or plt.subplots(figsize=(5, 4))[1]
        for k, potential in enumerate(data.potential.values):
            for j, name in enumerate(names):
                xy = data[f"curve_{name}"].sel(potential=potential).values
                if np.isfinite(xy).any():
                    if curve.startswith("energy_"):  # potentials differ by a constant: their minima at 0
                        xy = xy - [[0.0], [np.nanmin(xy[1])]]
                    ax.plot(xy[0], xy[1], color=f"C{k}", marker="o" if xy.shape[1] < 30 else None, ms=3,
                            label=str(potential) if j == 0 else None)
        x_name, _, y_name = curve.partition("_vs_")
        ax.set_xlabel(y_name.replace("_", " ") or "x")
        ax.set_ylabel(x_name.replace("_", " ") + (" - its minimum" if curve.startswith("energy_") else ""))
        ax.legend(fontsize=7)
        return ax
