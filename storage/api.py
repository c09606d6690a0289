"""The notebook API: one line opens a campaign's results.

    from storage import open_campaign
    c = open_campaign("runs/quickstart")       # a workdir, or the campaign's YAML file
    c.fields("deposition")                     # lazy xarray.Dataset over the sweep
    c.labels()                                 # labelled-data table (pandas)
    c.property_table()                         # potentials against DFT and the papers (pandas)
    c.plot.temperature_profile("deposition")

Every bad call raises a `StoreError` naming the path and what is wrong: `StoreNotFound`
(no workdir, store or study), `StoreCorrupt` (a file that cannot be read), `NotInStore`
(a field, structure or coordinate the store does not hold).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import xarray as xr

from storage.errors import NotInStore, StoreCorrupt, StoreError, StoreNotFound
from storage.fields import complete_runs, open_study, provenance_table, studies
from storage.labels import LabelIndex
from storage.properties import comparison_table, open_properties
from storage.sqlite import DatabaseUnreadable
from tasks.atomic import write_json

if TYPE_CHECKING:
    from storage.plots import Plots

#: Written by `campaign run` into the workdir: where this campaign keeps its store.
RECORD = "campaign.json"


def write_campaign_record(workdir: Path, name: str, store: Path, config_hash: str) -> None:
    """Tell the notebook API where the store is (`storage.path` may put it anywhere)."""
    store = Path(store)
    relative = os.path.relpath(store, workdir) if store.is_absolute() else str(store)
    record = {"name": name, "store": relative if not relative.startswith("..") else str(store),
              "config_hash": config_hash}
    write_json(workdir / RECORD, record)


def _store_of(workdir: Path) -> Path:
    path = workdir / RECORD
    if not path.exists():
        return workdir / "fields.zarr"
    try:
        store = Path(json.loads(path.read_text())["store"])
    except (ValueError, KeyError, TypeError) as error:
        raise StoreCorrupt(f"{path}: cannot be read ({type(error).__name__}: {error})") from None
    return store if store.is_absolute() else workdir / store


@dataclass
class Campaign:
    workdir: Path
    store: Path

    def studies(self) -> list[str]:
        return studies(self.store) if (self.store / "zarr.json").exists() else []

    def fields(self, study: str, complete_only: bool = True, chunks: object = None) -> xr.Dataset:
        """A study's fields (lazy); runs that are missing or failed are NaN unless `complete_only=False`.
        `chunks="blocks"` for reductions over large studies (see `storage.fields.open_study`)."""
        dataset = open_study(self.store, study, chunks)
        return complete_runs(dataset) if complete_only else dataset

    def field(self, study: str, variable: str, complete_only: bool = True, chunks: object = None) -> xr.DataArray:
        """One variable of a study (NotInStore, listing what it holds, if the study did not compute it)."""
        dataset = self.fields(study, complete_only, chunks)
        if variable not in dataset.data_vars:
            raise NotInStore(f"study '{study}' in {self.store} has no field '{variable}'; it has: "
                             f"{', '.join(sorted(dataset.data_vars))}")
        return dataset[variable]

    def provenance(self, study: str):
        """One row per written run: sweep coordinates, status, task id, potential and model digest,
        code versions, config hash, host, wall time (pandas)."""
        return provenance_table(open_study(self.store, study))

    def properties(self) -> xr.Dataset:
        """The property stage's results: value and uncertainty by potential and component (units
        as a coordinate), each property's status and wall time, the published columns, the
        ensemble's spread, and the curves (`storage.properties` has the layout)."""
        return open_properties(self.store)

    def property_table(self, reference: str | None = None):
        """The comparison table (pandas): potentials, published columns, differences from `reference` (%)."""
        return comparison_table(self.properties(), reference)

    def labels(self):
        """One row per labelled structure: source, engine, settings hash, status, energy, max force, npy system."""
        import pandas as pd

        path = self.workdir / "labels.sqlite"
        if not path.exists():
            return pd.DataFrame()
        try:
            with LabelIndex(path, readonly=True) as index:
                return index.frame()
        except (DatabaseUnreadable, pd.errors.DatabaseError) as error:
            raise StoreCorrupt(str(error)) from None

    @property
    def plot(self) -> "Plots":
        from storage.plots import Plots

        return Plots(self)


def open_campaign(path: str | Path) -> Campaign:
    """Open a campaign for analysis: its workdir, or its YAML config (the store where `storage.path` says)."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        from campaign.config import ConfigError, load_config

        try:
            config = load_config(path)
        except ConfigError as error:
            raise StoreError(f"{path}: {'; '.join(error.problems)}") from None
        return Campaign(config.workdir, config.store_path)
    if not path.is_dir():
        raise StoreNotFound(f"no campaign workdir at {path}" + (" (a file, not a directory)" if path.exists() else ""))
    return Campaign(path, _store_of(path))
