"""Reduction of MD frames to labelled fields (`xarray.Dataset`, units in attrs).

Each analysis follows MDAnalysis' `AnalysisBase` shape: `prepare(first_frame)`,
`one_frame(frame)`, `conclude() -> Dataset`. The same object runs over a stored trajectory
(`analyze_frames`) or streams from a running MD (`StreamingAnalysis` is a `run_md`
callback), so raw trajectories are optional.

Conventions: z-slabs are fixed bins of `slab_width` Å from the bottom of the box of the
first frame, named by their centres (`z`, Å); `time` is in ps; empty slabs are NaN, never 0.
"""

from __future__ import annotations

import json
import shutil
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

from tasks.md import Frame, Potential, run_md

BOLTZMANN_EV_PER_K = 8.617333262e-5
#: 1 amu Å²/ps² in eV.
AMU_A2_PS2_TO_EV = 1.0364269e-4
STRUCTURES = ("bcc", "fcc", "hcp", "other")


class FrameAnalysis(ABC):
    """Base class: `prepare` sees the first frame, `one_frame` every frame, `conclude` builds the fields."""

    def prepare(self, frame: Frame) -> None:  # noqa: B027 - optional hook: most analyses need no set-up
        """Set up from the first frame (slab grid, groups)."""

    @abstractmethod
    def one_frame(self, frame: Frame) -> None:
        """Accumulate what this frame contributes."""

    @abstractmethod
    def conclude(self) -> xr.Dataset:
        """The fields, with coordinates and units."""


@dataclass
class SlabGrid:
    """Fixed z bins: edges from `z_min` in steps of `width` up to `z_max`."""

    z_min: float
    z_max: float
    width: float

    @property
    def edges(self) -> np.ndarray:
        n = max(1, int(np.ceil((self.z_max - self.z_min) / self.width)))
        return self.z_min + self.width * np.arange(n + 1)

    @property
    def centres(self) -> np.ndarray:
        edges = self.edges
        return 0.5 * (edges[1:] + edges[:-1])

    def index(self, z: np.ndarray) -> np.ndarray:
        """Slab of each z; -1 outside the grid."""
        i = np.floor((z - self.z_min) / self.width).astype(int)
        return np.where((i >= 0) & (i < len(self.centres)), i, -1)

    @classmethod
    def for_frame(cls, frame: Frame, width: float) -> "SlabGrid":
        return cls(float(frame.box_lo[2]), float(frame.box_hi[2]), width)


def _z_coordinate(grid: SlabGrid) -> dict:
    return {"z": ("z", grid.centres, {"units": "angstrom", "long_name": "slab centre height"})}


def _time_coordinate(times: list[float]) -> dict:
    return {"time": ("time", np.array(times), {"units": "ps", "long_name": "simulation time"})}


def slab_temperature_of(frame: Frame, grid: SlabGrid, include_fixed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Temperature (K) and atom count per slab with each slab's centre-of-mass motion removed.

    T = Σ m |v - v_com|² / ((3N - 3) k_B) over the slab's mobile atoms: the 3 degrees of
    freedom of the removed drift are not counted (LAMMPS `temp/chunk ... com yes cdof -3`).
    Slabs with fewer than 2 atoms are NaN.
    """
    mask = np.ones(len(frame.ids), dtype=bool) if include_fixed else ~frame.fixed
    slab = grid.index(frame.positions[:, 2])
    mask &= slab >= 0
    slab, masses, velocities = slab[mask], frame.masses[mask], frame.velocities[mask]
    n_slabs = len(grid.centres)
    counts = np.bincount(slab, minlength=n_slabs).astype(float)
    total_mass = np.bincount(slab, weights=masses, minlength=n_slabs)
    momentum = np.stack([np.bincount(slab, weights=masses * velocities[:, k], minlength=n_slabs) for k in range(3)], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        com_velocity = momentum / total_mass[:, None]
    relative = velocities - com_velocity[slab]
    kinetic = np.bincount(slab, weights=masses * np.einsum("ij,ij->i", relative, relative), minlength=n_slabs)
    dof = 3 * counts - 3
    with np.errstate(invalid="ignore", divide="ignore"):
        temperature = np.where(counts >= 2, kinetic * AMU_A2_PS2_TO_EV / (dof * BOLTZMANN_EV_PER_K), np.nan)
    return temperature, counts


@dataclass
class SlabTemperature(FrameAnalysis):
    """Local temperature per z-slab over time; fixed atoms excluded."""

    slab_width: float = 10.0
    grid: SlabGrid | None = None
    _times: list[float] = field(default_factory=list)
    _temperature: list[np.ndarray] = field(default_factory=list)
    _counts: list[np.ndarray] = field(default_factory=list)

    def prepare(self, frame: Frame) -> None:
        self.grid = self.grid or SlabGrid.for_frame(frame, self.slab_width)

    def one_frame(self, frame: Frame) -> None:
        temperature, counts = slab_temperature_of(frame, self.grid)
        self._times.append(frame.time_ps)
        self._temperature.append(temperature)
        self._counts.append(counts)

    def conclude(self) -> xr.Dataset:
        return xr.Dataset(
            {"slab_temperature": (("time", "z"), np.array(self._temperature),
                                  {"units": "K", "long_name": "local temperature (slab drift removed)"}),
             "atoms_per_slab": (("time", "z"), np.array(self._counts),
                                {"units": "1", "long_name": "mobile atoms in the slab"})},
            coords={**_time_coordinate(self._times), **_z_coordinate(self.grid)})


def _tree(frame: Frame) -> tuple[cKDTree, np.ndarray]:
    """A periodic KD-tree in x and y (z treated as open by a box far taller than the atoms)."""
    lengths = frame.box_hi - frame.box_lo
    positions = frame.positions - frame.box_lo
    positions[:, :2] = np.mod(positions[:, :2], lengths[:2])
    z_span = positions[:, 2].max() - min(0.0, positions[:, 2].min())
    box = np.array([lengths[0], lengths[1], 3 * (z_span + lengths[2]) + 100.0])
    positions[:, 2] = np.mod(positions[:, 2], box[2])
    return cKDTree(positions, boxsize=box), positions


def _tree_3d(frame: Frame, periodic_z: bool) -> tuple[cKDTree, np.ndarray]:
    if not periodic_z:
        return _tree(frame)
    lengths = frame.box_hi - frame.box_lo
    positions = np.mod(frame.positions - frame.box_lo, lengths)
    return cKDTree(positions, boxsize=lengths), positions


def coordination_numbers(frame: Frame, cutoff: float, periodic_z: bool = False) -> np.ndarray:
    """Neighbours of each atom within `cutoff` Å (periodic in x, y; in z if `periodic_z`).

    OVITO's coordination modifier: measured 4x faster than a SciPy KD-tree on 20,000 atoms
    (benchmarks/analysis_throughput.py).
    """
    from ovito.modifiers import CoordinationAnalysisModifier

    data = _ovito_frame(frame, periodic_z)
    data.apply(CoordinationAnalysisModifier(cutoff=cutoff, number_of_bins=2))
    return np.asarray(data.particles["Coordination"][...]).astype(int)


@dataclass
class Coordination(FrameAnalysis):
    """Coordination number: mean per slab and the overall histogram, over time."""

    cutoff: float = 3.2
    slab_width: float = 10.0
    periodic_z: bool = False
    max_coordination: int = 16
    grid: SlabGrid | None = None
    _times: list[float] = field(default_factory=list)
    _mean: list[np.ndarray] = field(default_factory=list)
    _histogram: list[np.ndarray] = field(default_factory=list)

    def prepare(self, frame: Frame) -> None:
        self.grid = self.grid or SlabGrid.for_frame(frame, self.slab_width)

    def one_frame(self, frame: Frame) -> None:
        cn = coordination_numbers(frame, self.cutoff, self.periodic_z)
        slab = self.grid.index(frame.positions[:, 2])
        inside = slab >= 0
        n = len(self.grid.centres)
        counts = np.bincount(slab[inside], minlength=n)
        sums = np.bincount(slab[inside], weights=cn[inside], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            self._mean.append(np.where(counts > 0, sums / counts, np.nan))
        self._histogram.append(np.bincount(np.minimum(cn, self.max_coordination),
                                           minlength=self.max_coordination + 1) / len(cn))
        self._times.append(frame.time_ps)

    def conclude(self) -> xr.Dataset:
        attrs = {"cutoff_angstrom": self.cutoff}
        return xr.Dataset(
            {"coordination_mean": (("time", "z"), np.array(self._mean),
                                   {"units": "1", "long_name": "mean coordination number", **attrs}),
             "coordination_histogram": (("time", "coordination"), np.array(self._histogram),
                                        {"units": "1", "long_name": "fraction of atoms with this coordination",
                                         **attrs})},
            coords={**_time_coordinate(self._times), **_z_coordinate(self.grid),
                    "coordination": np.arange(self.max_coordination + 1)})


def _ovito_frame(frame: Frame, periodic_z: bool):
    """An OVITO DataCollection of the frame: periodic in x, y; open in z unless `periodic_z`."""
    from ovito.data import DataCollection, Particles, SimulationCell

    lengths = frame.box_hi - frame.box_lo
    positions = frame.positions - frame.box_lo
    positions[:, :2] = np.mod(positions[:, :2], lengths[:2])
    if periodic_z:
        positions[:, 2] = np.mod(positions[:, 2], lengths[2])
    else:
        lengths = lengths.copy()
        lengths[2] = max(lengths[2], positions[:, 2].max() + 1.0)
    data = DataCollection()
    cell = SimulationCell(pbc=(True, True, periodic_z))
    cell[...] = np.column_stack([np.diag(lengths), np.zeros(3)])
    data.objects.append(cell)
    particles = Particles()
    particles.create_property("Position", data=positions)
    data.objects.append(particles)
    return data


def structure_types(frame: Frame, periodic_z: bool = False) -> np.ndarray:
    """Adaptive common neighbour analysis (OVITO): index into STRUCTURES for each atom."""
    from ovito.modifiers import CommonNeighborAnalysisModifier

    data = _ovito_frame(frame, periodic_z)
    data.apply(CommonNeighborAnalysisModifier(mode=CommonNeighborAnalysisModifier.Mode.AdaptiveCutoff))
    ovito_type = np.asarray(data.particles["Structure Type"][...])
    kind = CommonNeighborAnalysisModifier.Type
    mapping = np.full(max(int(t) for t in (kind.OTHER, kind.FCC, kind.HCP, kind.BCC, kind.ICO)) + 1,
                      STRUCTURES.index("other"))
    mapping[int(kind.BCC)] = 0
    mapping[int(kind.FCC)] = 1
    mapping[int(kind.HCP)] = 2
    return mapping[ovito_type]


@dataclass
class StructureFractions(FrameAnalysis):
    """bcc/fcc/hcp/other fractions by a-CNA, over time and per slab."""

    slab_width: float = 10.0
    periodic_z: bool = False
    grid: SlabGrid | None = None
    _times: list[float] = field(default_factory=list)
    _total: list[np.ndarray] = field(default_factory=list)
    _slabs: list[np.ndarray] = field(default_factory=list)

    def prepare(self, frame: Frame) -> None:
        self.grid = self.grid or SlabGrid.for_frame(frame, self.slab_width)

    def one_frame(self, frame: Frame) -> None:
        kind = structure_types(frame, self.periodic_z)
        self._total.append(np.bincount(kind, minlength=4) / len(kind))
        slab = self.grid.index(frame.positions[:, 2])
        n = len(self.grid.centres)
        inside = slab >= 0
        table = np.zeros((n, 4))
        np.add.at(table, (slab[inside], kind[inside]), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            self._slabs.append(table / table.sum(axis=1, keepdims=True))
        self._times.append(frame.time_ps)

    def conclude(self) -> xr.Dataset:
        return xr.Dataset(
            {"structure_fraction": (("time", "structure"), np.array(self._total),
                                    {"units": "1", "long_name": "fraction of atoms (adaptive CNA)"}),
             "structure_fraction_by_slab": (("time", "z", "structure"), np.array(self._slabs),
                                            {"units": "1", "long_name": "fraction of the slab's atoms"})},
            coords={**_time_coordinate(self._times), **_z_coordinate(self.grid), "structure": list(STRUCTURES)})


def msd_fft(positions: np.ndarray) -> np.ndarray:
    """Windowed MSD over all time origins, O(T log T): positions (T, N, 3) -> msd (T,) Å².

    The algorithm of Calandrini et al. (as in MDAnalysis' EinsteinMSD with FFT).
    """
    n_times = positions.shape[0]
    squared = np.einsum("tnk,tnk->tn", positions, positions)
    padded = np.concatenate([squared, np.zeros((1, squared.shape[1]))])
    total = 2 * squared.sum(axis=0)
    s1 = np.zeros((n_times, squared.shape[1]))
    for m in range(n_times):
        total = total - padded[m - 1] - padded[n_times - m]
        s1[m] = total / (n_times - m)
    size = 2 * n_times
    transform = np.fft.rfft(positions, n=size, axis=0)
    autocorrelation = np.fft.irfft(transform * transform.conj(), n=size, axis=0)[:n_times].sum(axis=2)
    s2 = autocorrelation / (n_times - np.arange(n_times))[:, None]
    return (s1 - 2 * s2).mean(axis=1)


def diffusion_coefficient(lag_ps: np.ndarray, msd: np.ndarray, window: tuple[float, float] = (0.2, 0.8)) -> float:
    """D (Å²/ps) from a linear fit MSD = 6 D t over a window of fractions of the lag range."""
    lo, hi = int(window[0] * len(lag_ps)), max(int(window[1] * len(lag_ps)), int(window[0] * len(lag_ps)) + 2)
    slope, _ = np.polyfit(lag_ps[lo:hi], msd[lo:hi], 1)
    return float(slope / 6.0)


@dataclass
class MeanSquaredDisplacement(FrameAnalysis):
    """MSD of atom groups chosen on the first frame, and their diffusion coefficients.

    Groups: ``surface`` = mobile atoms within `surface_depth` Å of the highest atom of the
    first frame, ``bulk`` = the other mobile atoms. Atoms that appear later (deposited) are
    not tracked. Frames must be equally spaced in time.
    """

    surface_depth: float = 5.0
    fit_window: tuple[float, float] = (0.2, 0.8)
    groups: dict[str, np.ndarray] | None = None
    _tracked: np.ndarray | None = None
    _times: list[float] = field(default_factory=list)
    _positions: list[np.ndarray] = field(default_factory=list)

    def prepare(self, frame: Frame) -> None:
        mobile = ~frame.fixed
        self._tracked = frame.ids[mobile]
        if self.groups is None:
            z = frame.positions[mobile, 2]
            surface = z > z.max() - self.surface_depth
            self.groups = {"surface": self._tracked[surface], "bulk": self._tracked[~surface]}

    def one_frame(self, frame: Frame) -> None:
        index = np.searchsorted(frame.ids, self._tracked)
        self._positions.append(frame.positions[index])
        self._times.append(frame.time_ps)

    def conclude(self) -> xr.Dataset:
        positions = np.array(self._positions)
        lag = np.array(self._times) - self._times[0]
        names = list(self.groups)
        curves, coefficients = [], []
        for name in names:
            members = np.isin(self._tracked, self.groups[name])
            curve = msd_fft(positions[:, members]) if members.any() else np.full(len(lag), np.nan)
            curves.append(curve)
            coefficients.append(diffusion_coefficient(lag, curve, self.fit_window) if members.any() and len(lag) > 3
                                else np.nan)
        return xr.Dataset(
            {"msd": (("group", "lag"), np.array(curves), {"units": "angstrom^2", "long_name": "mean squared displacement"}),
             "diffusion_coefficient": (("group",), np.array(coefficients),
                                       {"units": "angstrom^2/ps", "long_name": "D from MSD = 6 D t",
                                        "fit_window_fraction_of_lags": list(self.fit_window),
                                        "to_cm2_per_s": 1e-4})},
            coords={"group": names, "lag": ("lag", lag, {"units": "ps"})})


@dataclass
class RadialDistribution(FrameAnalysis):
    """g(r) averaged over frames (periodic in x, y, and z if `periodic_z`)."""

    r_max: float = 8.0
    bin_width: float = 0.05
    periodic_z: bool = True
    _histogram: np.ndarray | None = None
    _density_sum: float = 0.0
    _n_frames: int = 0
    _n_atoms_sum: float = 0.0

    def one_frame(self, frame: Frame) -> None:
        edges = np.arange(0.0, self.r_max + self.bin_width, self.bin_width)
        tree, _ = _tree_3d(frame, self.periodic_z)
        distances = tree.sparse_distance_matrix(tree, self.r_max, output_type="ndarray")["v"]
        distances = distances[distances > 1e-8]
        histogram, _ = np.histogram(distances, bins=edges)
        self._histogram = histogram if self._histogram is None else self._histogram + histogram
        lengths = frame.box_hi - frame.box_lo
        self._density_sum += len(frame.ids) / np.prod(lengths)
        self._n_atoms_sum += len(frame.ids)
        self._n_frames += 1

    def conclude(self) -> xr.Dataset:
        edges = np.arange(0.0, self.r_max + self.bin_width, self.bin_width)
        shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
        density = self._density_sum / self._n_frames
        atoms = self._n_atoms_sum / self._n_frames
        rdf = self._histogram / self._n_frames / (atoms * density * shell)
        centres = 0.5 * (edges[1:] + edges[:-1])
        return xr.Dataset({"rdf": (("r",), rdf, {"units": "1", "long_name": "radial distribution function g(r)"})},
                          coords={"r": ("r", centres, {"units": "angstrom"})})


@dataclass
class PotentialEnergy(FrameAnalysis):
    """Mean potential energy per atom, total and per slab (eV/atom)."""

    slab_width: float = 10.0
    grid: SlabGrid | None = None
    _times: list[float] = field(default_factory=list)
    _mean: list[float] = field(default_factory=list)
    _slabs: list[np.ndarray] = field(default_factory=list)

    def prepare(self, frame: Frame) -> None:
        self.grid = self.grid or SlabGrid.for_frame(frame, self.slab_width)

    def one_frame(self, frame: Frame) -> None:
        slab = self.grid.index(frame.positions[:, 2])
        inside = slab >= 0
        n = len(self.grid.centres)
        counts = np.bincount(slab[inside], minlength=n)
        sums = np.bincount(slab[inside], weights=frame.potential_energy[inside], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            self._slabs.append(np.where(counts > 0, sums / counts, np.nan))
        self._mean.append(float(frame.potential_energy.mean()))
        self._times.append(frame.time_ps)

    def conclude(self) -> xr.Dataset:
        return xr.Dataset(
            {"potential_energy": (("time",), np.array(self._mean), {"units": "eV/atom", "long_name": "mean potential energy"}),
             "potential_energy_by_slab": (("time", "z"), np.array(self._slabs),
                                          {"units": "eV/atom", "long_name": "mean potential energy in the slab"})},
            coords={**_time_coordinate(self._times), **_z_coordinate(self.grid)})


#: Thresholds of `classify_morphology`, in units of the deposit's height or bottom diameter.
NEEDLE_ASPECT_RATIO = 2.0  # height / bottom diameter above this: a needle
MUSHROOM_TOP_TO_BOTTOM = 1.2  # top diameter / bottom diameter above this: a mushroom
FLAT_HEIGHT_ANGSTROM = 3.0  # roughness below this: flat


def classify_morphology(height: float, bottom_diameter: float, top_diameter: float) -> str:
    """needle / mushroom / hemisphere / flat from the deposit's height and diameters (Å).

    flat: height < 3 Å; mushroom: the top is > 1.2x wider than the bottom; needle: taller
    than 2x its bottom diameter; hemisphere: anything else.
    """
    if not np.isfinite(height) or height < FLAT_HEIGHT_ANGSTROM:
        return "flat"
    if bottom_diameter > 0 and top_diameter > MUSHROOM_TOP_TO_BOTTOM * bottom_diameter:
        return "mushroom"
    if bottom_diameter > 0 and height > NEEDLE_ASPECT_RATIO * bottom_diameter:
        return "needle"
    return "hemisphere"


def _lateral_gyration_radius(frame: Frame, mask: np.ndarray) -> float:
    """Radius of gyration in x, y of the selected atoms, periodic-aware (centre by circular mean)."""
    if mask.sum() < 2:
        return 0.0
    lengths = (frame.box_hi - frame.box_lo)[:2]
    xy = frame.positions[mask, :2] - frame.box_lo[:2]
    angles = 2 * np.pi * xy / lengths
    centre = np.mod(np.arctan2(np.sin(angles).mean(0), np.cos(angles).mean(0)), 2 * np.pi) * lengths / (2 * np.pi)
    offset = xy - centre
    offset -= lengths * np.round(offset / lengths)
    return float(np.sqrt(np.mean(np.sum(offset ** 2, axis=1))))


@dataclass
class DepositGeometry(FrameAnalysis):
    """Surface height map, deposit height, bottom and top diameter, morphology, over time.

    The substrate top is the highest atom of the first frame (before growth). The deposit
    is every atom above it. Its bottom and top diameters are those of the lowest and the
    highest quarter of its height, each taken as the diameter of the uniform disc with the
    same lateral radius of gyration (D = 2√2 R_g), which needs no grid and no surface mesh.
    The surface height map uses a `grid_spacing` Å xy grid.
    """

    grid_spacing: float = 2.0
    _substrate_top: float = 0.0
    _times: list[float] = field(default_factory=list)
    _height_maps: list[np.ndarray] = field(default_factory=list)
    _numbers: list[tuple[float, float, float]] = field(default_factory=list)
    _shape: tuple[int, int] = (1, 1)

    def prepare(self, frame: Frame) -> None:
        self._substrate_top = float(frame.positions[:, 2].max())
        lengths = frame.box_hi - frame.box_lo
        self._shape = (max(1, int(lengths[0] // self.grid_spacing)), max(1, int(lengths[1] // self.grid_spacing)))

    def _cells(self, frame: Frame, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lengths = frame.box_hi - frame.box_lo
        xy = np.mod(frame.positions[mask, :2] - frame.box_lo[:2], lengths[:2])
        i = np.minimum((xy[:, 0] / lengths[0] * self._shape[0]).astype(int), self._shape[0] - 1)
        j = np.minimum((xy[:, 1] / lengths[1] * self._shape[1]).astype(int), self._shape[1] - 1)
        return i, j

    def one_frame(self, frame: Frame) -> None:
        height_map = np.full(self._shape, np.nan)
        i, j = self._cells(frame, np.ones(len(frame.ids), dtype=bool))
        np.fmax.at(height_map, (i, j), frame.positions[:, 2])
        self._height_maps.append(height_map)
        z = frame.positions[:, 2]
        above = z > self._substrate_top + 0.5
        if above.sum() < 2:
            self._numbers.append((0.0, 0.0, 0.0))
        else:
            height = float(z[above].max() - self._substrate_top)
            diameters = []
            for lo, hi in ((0.0, 0.25), (0.75, 1.0)):
                band = above & (z >= self._substrate_top + lo * height) & (z <= self._substrate_top + hi * height + 0.5)
                diameters.append(2.0 * np.sqrt(2.0) * _lateral_gyration_radius(frame, band))
            self._numbers.append((height, diameters[0], diameters[1]))
        self._times.append(frame.time_ps)

    def conclude(self) -> xr.Dataset:
        numbers = np.array(self._numbers).reshape(-1, 3)
        labels = [classify_morphology(*row) for row in numbers]
        return xr.Dataset(
            {"surface_height": (("time", "x_cell", "y_cell"), np.array(self._height_maps),
                                {"units": "angstrom", "long_name": "highest atom in each xy cell"}),
             "deposit_height": (("time",), numbers[:, 0], {"units": "angstrom", "long_name": "deposit height above the substrate"}),
             "deposit_bottom_diameter": (("time",), numbers[:, 1], {"units": "angstrom"}),
             "deposit_top_diameter": (("time",), numbers[:, 2], {"units": "angstrom"}),
             "morphology": (("time",), np.array(labels, dtype="<U10"),
                            {"long_name": "needle / mushroom / hemisphere / flat",
                             "thresholds": f"flat < {FLAT_HEIGHT_ANGSTROM} A; mushroom top/bottom > "
                                           f"{MUSHROOM_TOP_TO_BOTTOM}; needle height/bottom > {NEEDLE_ASPECT_RATIO}"})},
            coords={**_time_coordinate(self._times), "x_cell": np.arange(self._shape[0]),
                    "y_cell": np.arange(self._shape[1])},
            attrs={"substrate_top_angstrom": self._substrate_top, "grid_spacing_angstrom": self.grid_spacing})


class StreamingAnalysis:
    """Runs analyses frame by frame as a `run_md` callback; `result()` merges their datasets."""

    def __init__(self, analyses: Sequence[FrameAnalysis]):
        self.analyses = list(analyses)
        self._prepared = False

    def __call__(self, frame: Frame) -> None:
        if not self._prepared:
            for analysis in self.analyses:
                analysis.prepare(frame)
            self._prepared = True
        for analysis in self.analyses:
            analysis.one_frame(frame)

    def result(self) -> xr.Dataset:
        return xr.merge([a.conclude() for a in self.analyses], compat="override", join="outer")


def analyze_frames(frames: Sequence[Frame], analyses: Sequence[FrameAnalysis]) -> xr.Dataset:
    """Run analyses over stored frames; the same code path as streaming."""
    stream = StreamingAnalysis(analyses)
    for frame in frames:
        stream(frame)
    return stream.result()


def default_analyses(fields: Sequence[str], slab_width: float = 10.0, coordination_cutoff: float = 3.2,
                     rdf_max: float = 8.0, fit_window: tuple[float, float] = (0.2, 0.8),
                     periodic_z: bool = False) -> list[FrameAnalysis]:
    """Analyses for the field names of a production study (`production[].fields`)."""
    makers = {
        "slab_temperature": lambda: SlabTemperature(slab_width),
        "coordination": lambda: Coordination(coordination_cutoff, slab_width, periodic_z),
        "structure_fractions": lambda: StructureFractions(slab_width, periodic_z),
        "msd": lambda: MeanSquaredDisplacement(fit_window=fit_window),
        "rdf": lambda: RadialDistribution(rdf_max, periodic_z=periodic_z),
        "potential_energy": lambda: PotentialEnergy(slab_width),
        "deposit_geometry": lambda: DepositGeometry(),
    }
    unknown = [f for f in fields if f not in makers]
    if unknown:
        raise ValueError(f"unknown fields {unknown}; known: {sorted(makers)}")
    return [makers[f]() for f in fields]


def md_with_fields(structure: str | Path, potential: Potential, protocol: str, params: dict[str, Any],
                   output_dir: str | Path, fields: Sequence[str], type_map: Sequence[str] = ("Li",),
                   masses_amu: dict[str, float] | None = None, slab_width: float = 10.0,
                   coordination_cutoff: float = 3.2, rdf_max: float = 8.0,
                   fit_window: tuple[float, float] = (0.2, 0.8), save_trajectory: bool = False) -> dict[str, Any]:
    """Run one MD protocol with its fields streamed; writes `fields.zarr` beside the run's outputs.

    The fields of a run that failed part-way are kept (up to its last good frame) and
    marked `run_status = failed` in their attrs. `result.json` is rewritten last with a
    `fields` entry (None when the run produced no frame at all).
    """
    from ase.io import read

    from tasks.label import vacuum_axes

    output_dir = Path(output_dir)
    atoms = read(str(structure))
    periodic_z = not vacuum_axes(atoms)[2] and protocol != "deposition"
    stream = StreamingAnalysis(default_analyses(fields, slab_width, coordination_cutoff, rdf_max, fit_window,
                                                periodic_z))
    target = output_dir / "fields.zarr"
    if target.exists():
        shutil.rmtree(target)  # from an attempt that died before result.json
    counts: list[tuple[float, int]] = []
    result = run_md(atoms, potential, protocol, params, output_dir, type_map, masses_amu,
                    [stream, lambda frame: counts.append((frame.time_ps, len(frame.ids)))], save_trajectory)
    if result.n_frames:
        times, numbers = zip(*counts)
        dataset = stream.result()
        dataset["n_atoms"] = xr.DataArray(np.array(numbers, dtype=float), dims="time", coords={"time": list(times)},
                                          attrs={"units": "1", "long_name": "atoms in the box"})
        dataset.attrs.update({"protocol": protocol, "run_status": result.status, "reason": result.reason,
                              "n_atoms_start": result.n_atoms_start, "n_atoms_end": result.n_atoms_end})
        temporary = output_dir / "fields.tmp.zarr"
        if temporary.exists():
            shutil.rmtree(temporary)
        dataset.to_zarr(temporary, mode="w", zarr_format=3, consolidated=False)
        temporary.rename(target)
    # result.json again, now with `fields`: a result.json without that key is a run whose fields
    # were never written (the worker died in between), and is redone.
    finished = {**asdict(result), "fields": str(target) if result.n_frames else None}
    (output_dir / "result.json.tmp").write_text(json.dumps(finished, indent=1))
    (output_dir / "result.json.tmp").replace(output_dir / "result.json")
    return finished
