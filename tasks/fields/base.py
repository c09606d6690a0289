"""Per-frame fields: the base owns frames and times, a field implements one frame.

The shape of MDAnalysis' `AnalysisBase`, with one addition that lets the store allocate a
whole sweep before any run starts: every field declares, from the `RunShape` (frames and
their times, the box, the atoms, all known before the run), the variables it writes, their
dimensions, coordinates, dtype and units. `FieldStream` preallocates those arrays, hands
each frame to every field through a `FrameCache` (the slab index of each atom and OVITO's
data collection are computed once per frame, whichever fields need them), and builds the
dataset from the declarations, so what a run writes is what was declared.

Conventions: z-slabs are fixed bins of `slab_width_angstrom` from the bottom of the box,
named by their centres (`z`, Å, with `z_bounds`); `time` is in ps; empty slabs are NaN,
never 0; frames past the last one of a run that stopped early are NaN ('' for text).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import xarray as xr
from pydantic import Field as ParamField

from tasks.frame import Frame
from tasks.plugin import Params

TEXT = "text"


@dataclass(frozen=True)
class RunShape:
    """What a run will hand its fields, known before it starts."""

    times_ps: np.ndarray  # time of every frame it can produce
    box_lo: np.ndarray
    box_hi: np.ndarray
    n_atoms: int  # at the start
    periodic_z: bool
    type_map: tuple[str, ...] = ("Li",)
    max_atoms: int = 0  # the most the run can hold (deposition adds atoms); 0: n_atoms

    @property
    def atom_slots(self) -> int:
        return max(self.max_atoms, self.n_atoms)

    @property
    def n_frames(self) -> int:
        return len(self.times_ps)


@dataclass(frozen=True)
class Variable:
    """A variable a field writes: dimensions (``time`` first when it has one), dtype, CF attributes."""

    dims: tuple[str, ...]
    attrs: dict[str, Any]
    dtype: str = "float32"  # numpy dtype name, or TEXT for variable-length strings

    @property
    def fill(self) -> Any:
        if self.dtype == TEXT:
            return ""
        return np.nan if np.dtype(self.dtype).kind == "f" else 0


@dataclass(frozen=True)
class Coordinate:
    values: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    bounds: np.ndarray | None = None  # (n, 2) cell bounds (CF `bounds`)


class FieldParams(Params):
    """Parameters of every field (none so far); a field's own model extends it."""


class SlabParams(FieldParams):
    slab_width_angstrom: float = ParamField(10.0, gt=0, description="Å, height of a z-slab")


@dataclass(frozen=True)
class SlabGrid:
    """Fixed z bins: edges from `z_min` in steps of `width` up to `z_max`."""

    z_min: float
    z_max: float
    width: float

    @property
    def edges(self) -> np.ndarray:
        n = max(1, int(np.ceil((self.z_max - self.z_min) / self.width - 1e-9)))
        return self.z_min + self.width * np.arange(n + 1)

    @property
    def centres(self) -> np.ndarray:
        edges = self.edges
        return 0.5 * (edges[1:] + edges[:-1])

    def index(self, z: np.ndarray) -> np.ndarray:
        """Slab of each z; -1 outside the grid."""
        i = np.floor((z - self.z_min) / self.width).astype(np.int64)
        i[(i < 0) | (i >= len(self.edges) - 1)] = -1
        return i

    def coordinate(self) -> Coordinate:
        edges = self.edges
        return Coordinate(self.centres, {"units": "angstrom", "long_name": "slab centre height", "axis": "Z"},
                          np.column_stack([edges[:-1], edges[1:]]))

    @classmethod
    def for_shape(cls, shape: RunShape, width: float) -> "SlabGrid":
        return cls(float(shape.box_lo[2]), float(shape.box_hi[2]), width)


class FrameCache:
    """Per-frame quantities several fields need, computed at most once per frame."""

    def __init__(self, frame: Frame):
        self.frame = frame
        self._slabs: dict[SlabGrid, np.ndarray] = {}
        self._ovito: dict[bool, Any] = {}

    def slab(self, grid: SlabGrid) -> np.ndarray:
        if grid not in self._slabs:
            self._slabs[grid] = grid.index(self.frame.positions[:, 2])
        return self._slabs[grid]

    def ovito(self, periodic_z: bool) -> Any:
        """An OVITO DataCollection of the frame (periodic in x, y; in z if `periodic_z`) for one
        modifier to work on: a copy-on-write clone of the frame's one conversion, so that the
        tables and properties one field's modifier adds never meet another's."""
        if periodic_z not in self._ovito:
            self._ovito[periodic_z] = ovito_collection(self.frame, periodic_z)
        return self._ovito[periodic_z].clone()


_OVITO_IMPORT = threading.Lock()


def ovito_modifiers() -> Any:
    """`ovito.modifiers`, imported under a lock: OVITO's lazy import fails when two threads (Dask
    tasks of `campaign analyze`) take it at once."""
    with _OVITO_IMPORT:
        import ovito.data  # noqa: F401 - loaded together, under the lock
        import ovito.modifiers

        return ovito.modifiers


def ovito_collection(frame: Frame, periodic_z: bool) -> Any:
    """The frame as an OVITO DataCollection, without copying or wrapping positions: OVITO maps
    periodic images itself; an open z extends the cell over every atom."""
    ovito_modifiers()
    from ovito.data import DataCollection, Particles, SimulationCell

    lengths = frame.box_hi - frame.box_lo
    if not periodic_z:
        lengths = lengths.copy()
        lengths[2] = max(lengths[2], frame.positions[:, 2].max() - frame.box_lo[2] + 1.0)
    data = DataCollection()
    cell = SimulationCell(pbc=(True, True, periodic_z))
    cell[...] = np.column_stack([np.diag(lengths), frame.box_lo])
    data.objects.append(cell)
    particles = Particles(count=len(frame.positions))
    particles.create_property("Position", data=frame.positions)
    data.objects.append(particles)
    return data


class FrameField(ABC):
    """A field plug-in: `name`, `Params`, the variables it declares, and what one frame gives."""

    name: ClassVar[str]
    Params: ClassVar[type[FieldParams]] = FieldParams

    def __init__(self, shape: RunShape, params: FieldParams | Mapping[str, Any] | None = None):
        self.params = params if isinstance(params, self.Params) else self.Params.model_validate(dict(params or {}))
        self.shape = shape

    @abstractmethod
    def variables(self) -> dict[str, Variable]:
        """The variables this field writes for `self.shape`."""

    def coordinates(self) -> dict[str, Coordinate]:
        """Coordinates of its dimensions other than ``time``."""
        return {}

    def prepare(self, frame: Frame) -> None:  # noqa: B027 - optional hook: most fields need no set-up
        """Set up from the first frame (groups, the substrate's top)."""

    def one_frame(self, frame: Frame, cache: FrameCache) -> dict[str, Any]:
        """Values of this frame for each time-dependent variable (without the ``time`` axis)."""
        return {}

    def conclude(self) -> dict[str, Any]:
        """Values of the variables without a ``time`` axis, after the last frame."""
        return {}


class SlabField(FrameField):
    """A field over the run's z-slabs (`slab_width_angstrom`), with the ``z`` coordinate."""

    Params = SlabParams

    @cached_property
    def grid(self) -> SlabGrid:
        return SlabGrid.for_shape(self.shape, self.params.slab_width_angstrom)

    @cached_property
    def n_slabs(self) -> int:
        return len(self.grid.centres)

    def coordinates(self) -> dict[str, Coordinate]:
        return {"z": self.grid.coordinate()}

    def slab_mean(self, cache: FrameCache, values: np.ndarray) -> np.ndarray:
        """Mean of a per-atom quantity in each slab; NaN for an empty slab."""
        slab = cache.slab(self.grid)
        inside = slab >= 0
        counts = np.bincount(slab[inside], minlength=self.n_slabs)
        sums = np.bincount(slab[inside], weights=values[inside], minlength=self.n_slabs)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / counts, np.nan)


class FieldStream:
    """Runs fields frame by frame as a `run_md` callback; `dataset()` holds what they wrote."""

    def __init__(self, fields: Sequence[FrameField], shape: RunShape):
        self.fields = list(fields)
        self.shape = shape
        self.n_frames = 0
        self._declared = {name: (f, v) for f in self.fields for name, v in f.variables().items()}
        self._series = {name: np.full((shape.n_frames, *self._sizes(v.dims[1:])), v.fill,
                                      dtype=object if v.dtype == TEXT else v.dtype)
                        for name, (_, v) in self._declared.items() if v.dims[:1] == ("time",)}

    def _sizes(self, dims: Sequence[str]) -> tuple[int, ...]:
        coordinates = self.coordinates()
        return tuple(len(coordinates[d].values) for d in dims)

    def coordinates(self) -> dict[str, Coordinate]:
        result = {"time": Coordinate(np.asarray(self.shape.times_ps, dtype=float),
                                     {"units": "ps", "long_name": "simulation time", "axis": "T"})}
        for f in self.fields:
            result.update(f.coordinates())
        return result

    def __call__(self, frame: Frame) -> None:
        if self.n_frames >= self.shape.n_frames:
            raise RuntimeError(f"the run handed more frames than its declared {self.shape.n_frames}")
        if self.n_frames == 0:
            for f in self.fields:
                f.prepare(frame)
        cache = FrameCache(frame)
        for f in self.fields:
            for name, value in f.one_frame(frame, cache).items():
                self._series[name][self.n_frames] = value
        self.n_frames += 1

    def series(self) -> dict[str, np.ndarray]:
        """The time series so far (the frames received), for a partial write while the run goes on."""
        return {name: values[:self.n_frames] for name, values in self._series.items()}

    def dataset(self) -> xr.Dataset:
        """Every declared variable (time series padded to the declared frames) with coordinates."""
        concluded: dict[str, Any] = {}
        for f in self.fields:
            concluded.update(f.conclude() if self.n_frames else {})
        variables = {}
        for name, (_, variable) in self._declared.items():
            if variable.dims[:1] == ("time",):
                values = self._series[name]
            elif name in concluded:
                values = np.asarray(concluded[name], dtype=object if variable.dtype == TEXT else variable.dtype)
            else:
                values = np.full(self._sizes(variable.dims), variable.fill,
                                 dtype=object if variable.dtype == TEXT else variable.dtype)
            variables[name] = (variable.dims, values, dict(variable.attrs))
        coords: dict[str, Any] = {}
        for name, coordinate in self.coordinates().items():
            attrs = dict(coordinate.attrs)
            if coordinate.bounds is not None:
                attrs["bounds"] = f"{name}_bounds"
                coords[f"{name}_bounds"] = ((name, "bounds"), coordinate.bounds, {"units": attrs.get("units", "")})
            coords[name] = (name, coordinate.values, attrs)
        return xr.Dataset(variables, coords=coords)
