"""The `properties` group of the campaign store: every property component of every potential,
with units, uncertainties, the ensemble's spread, the published columns, and the curves the
plots draw; and the comparison table made from it.

Layout (dimensions ``potential``, ``component``, ``property``, ``source``)::

    value, uncertainty, note      (potential, component)   the component's unit and property are
                                                           coordinates along ``component``
    status, wall_time_s           (potential, property)    'ok', 'failed: <reason>', 'not run: <why>'
    published                     (source, component)      study 002's Table 1 columns
    ensemble_mean, ensemble_spread (component)             over the members, when `ensemble` was listed
    curve_<name>                  (potential, axis, <name>_point)   x and y, NaN-padded

The property stage is its one writer (the driver, after the stage: a few numbers per
potential); it rewrites the group whole, so it always matches the finished properties.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from storage.errors import NotInStore, StoreCorrupt
from storage.fields import CONVENTIONS, SCHEMA_VERSION, open_root, quiet_zarr
from tasks.properties import PropertyResult
from tasks.properties.published import PUBLISHED_COLUMNS, STUDY_002_TABLE_1

GROUP = "properties"
MEMBER_PREFIX = "member-"
DEFAULT_REFERENCE = "DFT (002)"
#: the longest note head a comparison table shows in place of a value not found
VERDICT_CHARS = 24


@dataclass(frozen=True)
class PropertyOutcome:
    """One (potential, property) of the stage: its result, or why there is none."""

    potential: str
    property: str
    result: PropertyResult | None
    status: str  # 'ok', 'failed: <reason>', 'not run: <why>'


def properties_dataset(outcomes: list[PropertyOutcome], reference: str | None) -> xr.Dataset:
    potentials = list(dict.fromkeys(o.potential for o in outcomes))
    properties = list(dict.fromkeys(o.property for o in outcomes))
    units: dict[str, str] = {}
    owner: dict[str, str] = {}
    for outcome in outcomes:
        for value in outcome.result.values if outcome.result else []:
            units.setdefault(value.component, value.unit)
            owner.setdefault(value.component, outcome.property)
    components = list(units)
    shape = (len(potentials), len(components))
    value, uncertainty = np.full(shape, np.nan), np.full(shape, np.nan)
    note = np.full(shape, "", dtype=object)
    status = np.full((len(potentials), len(properties)), "not run", dtype=object)
    wall = np.full(status.shape, np.nan)
    curves: dict[str, dict[str, list[list[float]]]] = {}
    for outcome in outcomes:
        i, k = potentials.index(outcome.potential), properties.index(outcome.property)
        status[i, k] = outcome.status
        if outcome.result is None:
            continue
        wall[i, k] = outcome.result.wall_time_s
        for item in outcome.result.values:
            j = components.index(item.component)
            value[i, j] = item.value
            uncertainty[i, j] = np.nan if item.uncertainty is None else item.uncertainty
            note[i, j] = item.note
        for name, curve in outcome.result.curves.items():
            curves.setdefault(name, {})[outcome.potential] = curve
    variables: dict[str, tuple] = {
        "value": (("potential", "component"), value, {"long_name": "property value (unit per component)"}),
        "uncertainty": (("potential", "component"), uncertainty,
                        {"long_name": "fit standard error, or the change over the last size step"}),
        "note": (("potential", "component"), note),
        "status": (("potential", "property"), status),
        "wall_time_s": (("potential", "property"), wall, {"units": "s"}),
        "published": (("source", "component"), np.array([[STUDY_002_TABLE_1.get(c, {}).get(s, np.nan)
                                                          for c in components] for s in PUBLISHED_COLUMNS]),
                      {"long_name": "study 002, Table 1 (bcc Li, 0 K)"}),
    }
    members = [p for p in potentials if p.startswith(MEMBER_PREFIX)]
    if members:
        member_values = value[[potentials.index(m) for m in members]]
        with warnings.catch_warnings():  # a component no member has (all NaN) is NaN, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            variables["ensemble_mean"] = (("component",), np.nanmean(member_values, axis=0))
            variables["ensemble_spread"] = (("component",), np.nanstd(member_values, axis=0),
                                            {"long_name": "standard deviation over the ensemble's members"})
    for name, by_potential in curves.items():
        points = max(len(curve[0]) for curve in by_potential.values())
        data = np.full((len(potentials), 2, points), np.nan)
        for potential, (x, y) in by_potential.items():
            data[potentials.index(potential), 0, :len(x)] = x
            data[potentials.index(potential), 1, :len(y)] = y
        variables[f"curve_{name}"] = (("potential", "axis", f"{name}_point"), data)
    coords = {"potential": _text(potentials), "component": _text(components), "property": _text(properties),
              "source": _text(PUBLISHED_COLUMNS), "axis": _text(["x", "y"]),
              "unit": ("component", _text([units[c] for c in components])),
              "of_property": ("component", _text([owner[c] for c in components]))}
    return xr.Dataset(variables, coords=coords,
                      attrs={"reference": reference or "", "members": json.dumps(members), "Conventions": CONVENTIONS})


def _text(values: list[str]) -> np.ndarray:
    """Variable-length strings (zarr's `string` type; numpy's fixed-width ones have no v3 spec)."""
    return np.array(values, dtype=object)


def write_properties(store: str | Path, outcomes: list[PropertyOutcome], reference: str | None) -> xr.Dataset:
    """The group, written whole (replacing the previous one), then the store's metadata consolidated."""
    dataset = properties_dataset(outcomes, reference)
    with quiet_zarr():
        root = zarr.open_group(str(store), mode="a", zarr_format=3)
        root.attrs.update({"schema_version": SCHEMA_VERSION, "created_by": "dendrite-campaign",
                           "Conventions": CONVENTIONS})
        dataset.to_zarr(str(store), group=GROUP, mode="w", zarr_format=3, consolidated=False)
        zarr.consolidate_metadata(str(store))
    return dataset


def open_properties(store: str | Path) -> xr.Dataset:
    """The `properties` group, loaded (it is small); NotInStore when no property stage ran."""
    root = open_root(store)
    if GROUP not in root:
        raise NotInStore(f"no properties in {store}: the campaign has no `properties:` section, or its stage "
                         f"has not finished")
    try:
        with quiet_zarr():
            return xr.open_zarr(str(store), group=GROUP, consolidated=True).load()
    except (ValueError, KeyError, OSError) as error:
        raise StoreCorrupt(f"{Path(store) / GROUP}: cannot be read ({type(error).__name__}: {error})") from None


def comparison_table(dataset: xr.Dataset, reference: str | None = None):
    """One row per component: its unit, each potential's value (the ensemble as mean ± spread of
    its members), the published columns, and each potential's difference from `reference` (%).

    `reference`: a potential or a published column; default the group's own (the labeller when
    one was computed, else study 002's DFT).
    """
    import pandas as pd

    members = json.loads(dataset.attrs.get("members", "[]"))
    asked = reference is not None
    reference = reference or dataset.attrs.get("reference") or DEFAULT_REFERENCE
    columns: dict[str, list] = {"component": list(dataset.component.values), "unit": list(dataset.unit.values)}
    values: dict[str, np.ndarray] = {}
    for potential in dataset.potential.values:
        if potential not in members:
            values[str(potential)] = dataset.value.sel(potential=potential).values
    if members:
        values["ensemble"] = dataset.ensemble_mean.values
    for source in dataset.source.values:
        published = dataset.published.sel(source=source).values
        if np.isfinite(published).any():
            values[str(source)] = published
    for name, column in values.items():
        columns[name] = [_shown(v) for v in column]
    for potential in values.keys() & set(map(str, dataset.potential.values)):
        # a value not found may say why in a few words: "above 510 K" for a melting point not bracketed
        columns[potential] = [_verdict(note) if shown == "-" else shown
                              for shown, note in zip(columns[potential], dataset.note.sel(potential=potential).values)]
    if members:
        verdicts = ["; ".join(dict.fromkeys(v for v in map(_verdict, notes) if v != "-")) or "-"
                    for notes in dataset.note.sel(potential=members).values.T]
        columns["ensemble"] = [f"{_shown(m)} ± {_shown(s)}" if np.isfinite(m) else verdict for m, s, verdict
                               in zip(dataset.ensemble_mean.values, dataset.ensemble_spread.values, verdicts)]
    if reference not in values:
        if asked:
            raise NotInStore(f"no column '{reference}' to compare against; the columns: {', '.join(values)}")
        return pd.DataFrame(columns)  # the default reference has no values (its properties failed)
    base = values[reference]
    for name, column in values.items():
        if name != reference and name in (*map(str, dataset.potential.values), "ensemble"):
            with np.errstate(all="ignore"):
                columns[f"{name} vs {reference} (%)"] = [f"{100 * (v - b) / abs(b):+.0f}" if np.isfinite(v * b)
                                                         and b != 0 else "-" for v, b in zip(column, base)]
    return pd.DataFrame(columns)


def _verdict(note: str) -> str:
    """A note's head before its first colon, when it is a short verdict ("above 510 K"), else "-"."""
    head = str(note).split(":", 1)[0].strip()
    return head if head and ":" in str(note) and len(head) <= VERDICT_CHARS else "-"


def _shown(value: float) -> str:
    if not np.isfinite(value):
        return "-"
    return f"{value:.4f}" if abs(value) < 0.1 else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
