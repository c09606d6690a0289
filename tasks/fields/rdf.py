"""Radial distribution function g(r), averaged over the frames."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator
from scipy.spatial import cKDTree

from tasks.fields.base import Coordinate, FrameCache, FrameField, FieldParams, Variable
from tasks.frame import Frame


class RdfParams(FieldParams):
    r_max_angstrom: float = Field(8.0, gt=0, description="Å")
    bin_width_angstrom: float = Field(0.05, gt=0, description="Å")

    @model_validator(mode="after")
    def _bins(self) -> "RdfParams":
        if self.bin_width_angstrom >= self.r_max_angstrom:
            raise ValueError("bin_width_angstrom must be smaller than r_max_angstrom")
        return self


def periodic_tree(frame: Frame, periodic_z: bool) -> cKDTree:
    """A KD-tree periodic in x and y, and in z if `periodic_z` (else z is open: a box far taller)."""
    lengths = frame.box_hi - frame.box_lo
    positions = frame.positions - frame.box_lo
    positions[:, :2] %= lengths[:2]
    if periodic_z:
        positions[:, 2] %= lengths[2]
        return cKDTree(positions, boxsize=lengths)
    z_span = positions[:, 2].max() - min(0.0, positions[:, 2].min())
    box = np.array([lengths[0], lengths[1], 3 * (z_span + lengths[2]) + 100.0])
    positions[:, 2] %= box[2]
    return cKDTree(positions, boxsize=box)


class RadialDistribution(FrameField):
    name = "rdf"
    Params = RdfParams

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._histogram = np.zeros(len(self._edges) - 1)
        self._density_sum = self._atoms_sum = 0.0
        self._frames = 0

    @property
    def _edges(self) -> np.ndarray:
        width = self.params.bin_width_angstrom
        return np.arange(0.0, self.params.r_max_angstrom + width / 2, width)

    def coordinates(self) -> dict[str, Coordinate]:
        edges = self._edges
        return {"r": Coordinate(0.5 * (edges[1:] + edges[:-1]), {"units": "angstrom", "long_name": "distance"},
                                np.column_stack([edges[:-1], edges[1:]]))}

    def variables(self) -> dict[str, Variable]:
        return {"rdf": Variable(("r",), {"units": "1", "long_name": "radial distribution function g(r)",
                                         "cell_methods": "time: mean"})}

    def one_frame(self, frame: Frame, cache: FrameCache) -> dict[str, Any]:
        tree = periodic_tree(frame, self.shape.periodic_z)
        distances = tree.sparse_distance_matrix(tree, self.params.r_max_angstrom, output_type="ndarray")["v"]
        self._histogram += np.histogram(distances[distances > 1e-8], bins=self._edges)[0]
        self._density_sum += len(frame.ids) / np.prod(frame.box_hi - frame.box_lo)
        self._atoms_sum += len(frame.ids)
        self._frames += 1
        return {}

    def conclude(self) -> dict[str, Any]:
        edges = self._edges
        shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
        density, atoms = self._density_sum / self._frames, self._atoms_sum / self._frames
        return {"rdf": self._histogram / self._frames / (atoms * density * shell)}
