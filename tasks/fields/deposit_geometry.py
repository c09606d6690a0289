"""Deposit shape: surface height map, height, bottom and top diameter, morphology class.

The substrate top is the highest atom of the first frame (before growth). The deposit is
every atom above it that has landed: connected to the substrate through a chain of
neighbours closer than `contact_angstrom`, so atoms still falling are not taken for the
tip. Bottom and top diameters are those of the lowest and the highest quarter of the
deposit's height, each the diameter of the uniform disc with the same lateral radius of
gyration (D = 2√2 R_g), which needs no grid and no surface mesh.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from tasks.fields.base import TEXT, Coordinate, FrameCache, FrameField, FieldParams, Variable
from tasks.frame import Frame

#: Thresholds of `classify_morphology`, in units of the deposit's height or bottom diameter.
NEEDLE_ASPECT_RATIO = 2.0  # height / bottom diameter above this: a needle
MUSHROOM_TOP_TO_BOTTOM = 1.2  # top diameter / bottom diameter above this: a mushroom
FLAT_HEIGHT_ANGSTROM = 3.0  # height below this: flat
#: Atoms closer than this (Å) touch: between bcc Li's first (3.04 Å) and second (3.51 Å) shell.
CONTACT_ANGSTROM = 3.4


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


def landed(frame: Frame, substrate_top: float, contact_angstrom: float = CONTACT_ANGSTROM) -> np.ndarray:
    """Mask of the atoms above `substrate_top` (+0.5 Å) that touch the substrate through neighbours."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    z = frame.positions[:, 2]
    above = z > substrate_top + 0.5
    if not above.any():
        return above
    near = np.flatnonzero(z > substrate_top - contact_angstrom)  # the substrate's top layers and everything above
    lengths = frame.box_hi - frame.box_lo
    xy = np.mod(frame.positions[near, :2] - frame.box_lo[:2], lengths[:2])
    points = np.column_stack([xy, z[near] - z[near].min()])
    from scipy.spatial import cKDTree

    box = np.array([lengths[0], lengths[1], points[:, 2].max() + 2 * contact_angstrom + 1.0])
    pairs = cKDTree(points, boxsize=box).query_pairs(contact_angstrom, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(near), len(near)))
    _, component = connected_components(graph, directed=False)
    grounded = np.unique(component[~above[near]])
    result = np.zeros(len(z), dtype=bool)
    result[near] = above[near] & np.isin(component, grounded)
    return result


def deposit_height(frame: Frame, substrate_top: float) -> float:
    """Height (Å) of the landed deposit above the substrate's top; 0 when nothing has landed."""
    mask = landed(frame, substrate_top)
    return float(frame.positions[mask, 2].max() - substrate_top) if mask.any() else 0.0


def substrate_top(frame: Frame, n_start: int) -> float:
    """Highest atom of those the run started with (LAMMPS ids 1..n_start): by the first frame
    deposited atoms may already be falling, far above the substrate."""
    return float(frame.positions[frame.ids <= n_start, 2].max())


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


class DepositGeometryParams(FieldParams):
    grid_spacing_angstrom: float = Field(2.0, gt=0, description="Å, cell size of the surface height map")
    contact_angstrom: float = Field(CONTACT_ANGSTROM, gt=0, description="Å; atoms closer than this touch")


class DepositGeometry(FrameField):
    name = "deposit_geometry"
    Params = DepositGeometryParams

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._substrate_top = np.nan

    @property
    def _cells(self) -> tuple[int, int]:
        lengths = self.shape.box_hi - self.shape.box_lo
        spacing = self.params.grid_spacing_angstrom
        return max(1, int(lengths[0] // spacing)), max(1, int(lengths[1] // spacing))

    def coordinates(self) -> dict[str, Coordinate]:
        nx, ny = self._cells
        return {"x_cell": Coordinate(np.arange(nx), {"long_name": "height-map cell along x"}),
                "y_cell": Coordinate(np.arange(ny), {"long_name": "height-map cell along y"})}

    def variables(self) -> dict[str, Variable]:
        thresholds = (f"flat < {FLAT_HEIGHT_ANGSTROM} A; mushroom top/bottom > {MUSHROOM_TOP_TO_BOTTOM}; "
                      f"needle height/bottom > {NEEDLE_ASPECT_RATIO}")
        return {
            "surface_height": Variable(("time", "x_cell", "y_cell"), {
                "units": "angstrom", "long_name": "highest atom in each xy cell",
                "grid_spacing_angstrom": self.params.grid_spacing_angstrom}),
            "deposit_height": Variable(("time",), {"units": "angstrom", "long_name": "landed deposit's height "
                                                   "above the substrate"}),
            "deposit_bottom_diameter": Variable(("time",), {"units": "angstrom", "long_name": "diameter of the "
                                                            "lowest quarter of the deposit"}),
            "deposit_top_diameter": Variable(("time",), {"units": "angstrom", "long_name": "diameter of the "
                                                         "highest quarter of the deposit"}),
            "morphology": Variable(("time",), {"long_name": "needle / mushroom / hemisphere / flat",
                                               "thresholds": thresholds}, TEXT),
            "substrate_top": Variable((), {"units": "angstrom", "long_name": "highest substrate atom before "
                                           "deposition"}, "float64"),
        }

    def prepare(self, frame: Frame) -> None:
        self._substrate_top = substrate_top(frame, self.shape.n_atoms)

    def one_frame(self, frame: Frame, cache: FrameCache) -> dict[str, Any]:
        nx, ny = self._cells
        lengths = frame.box_hi - frame.box_lo
        xy = np.mod(frame.positions[:, :2] - frame.box_lo[:2], lengths[:2])
        i = np.minimum((xy[:, 0] / lengths[0] * nx).astype(int), nx - 1)
        j = np.minimum((xy[:, 1] / lengths[1] * ny).astype(int), ny - 1)
        deposit = landed(frame, self._substrate_top, self.params.contact_angstrom)
        height_map = np.full((nx, ny), np.nan)
        z = frame.positions[:, 2]
        grounded = ~(z > self._substrate_top + 0.5) | deposit  # atoms in flight are not the surface
        np.fmax.at(height_map, (i[grounded], j[grounded]), z[grounded])
        height = bottom = top = 0.0
        if deposit.any():  # the height the protocol's stopper sees (`deposit_height`)
            height = float(z[deposit].max() - self._substrate_top)
            diameters = []
            for lo, hi in ((0.0, 0.25), (0.75, 1.0)):
                band = deposit & (z >= self._substrate_top + lo * height) & (z <= self._substrate_top + hi * height
                                                                             + 0.5)
                diameters.append(2.0 * np.sqrt(2.0) * _lateral_gyration_radius(frame, band))
            bottom, top = diameters
        return {"surface_height": height_map, "deposit_height": height, "deposit_bottom_diameter": bottom,
                "deposit_top_diameter": top, "morphology": classify_morphology(height, bottom, top)}

    def conclude(self) -> dict[str, Any]:
        return {"substrate_top": self._substrate_top}
