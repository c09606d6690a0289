"""The notebook API: one line opens a campaign's results.

    from storage import open_campaign
    c = open_campaign("runs/quickstart")
    c.fields("deposition")          # lazy xarray.Dataset over the sweep
    c.labels()                      # labelled-data table (pandas)
    c.plot.temperature_profile("deposition")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import xarray as xr

from storage.fields import StoreError, complete_runs, open_study, studies
from storage.labels import LabelIndex

if TYPE_CHECKING:
    from storage.plots import Plots


@dataclass
class Campaign:
    workdir: Path

    @property
    def store(self) -> Path:
        return self.workdir / "fields.zarr"

    def studies(self) -> list[str]:
        return studies(self.store) if (self.store / "zarr.json").exists() else []

    def fields(self, study: str, complete_only: bool = True) -> xr.Dataset:
        """A study's fields (lazy); runs that are missing or failed are NaN unless `complete_only=False`."""
        dataset = open_study(self.store, study)
        return complete_runs(dataset) if complete_only else dataset

    def labels(self):
        """One row per labelled structure: source, engine, settings hash, status, energy, max force, npy system."""
        import pandas as pd

        path = self.workdir / "labels.sqlite"
        if not path.exists():
            return pd.DataFrame()
        with LabelIndex(path) as index:
            return index.frame()

    @property
    def plot(self) -> "Plots":
        from storage.plots import Plots

        return Plots(self)


def open_campaign(workdir: str | Path) -> Campaign:
    """Open a campaign's workdir for analysis (raises StoreError if it does not exist)."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise StoreError(f"no campaign workdir at {workdir}")
    return Campaign(workdir)
