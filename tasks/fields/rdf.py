"""Radial distribution function g(r), averaged over the frames (OVITO's pair histogram)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from tasks.fields.base import Coordinate, FieldParams, FrameCache, FrameField, Variable, ovito_modifiers
from tasks.frame import Frame


class RdfParams(FieldParams):
    r_max_angstrom: float = Field(8.0, gt=0, description="Å")
    bin_width_angstrom: float = Field(0.05, gt=0, description="Å; rounded so that whole bins span r_max")

    @model_validator(mode="after")
    def _bins(self) -> "RdfParams":
        if self.bin_width_angstrom >= self.r_max_angstrom:
            raise ValueError("bin_width_angstrom must be smaller than r_max_angstrom")
        return self

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(0.0, self.r_max_angstrom, round(self.r_max_angstrom / self.bin_width_angstrom) + 1)


class RadialDistribution(FrameField):
    """g(r) = <pairs in the shell> / (N ρ 4π r² dr), ρ = N / V of the box, periodic in x, y (and in
    z unless the run has vacuum or grows). OVITO's coordination modifier gives the pair
    histogram (its g(r) times N² shell / V reproduces an exact pair count); the average over
    frames is taken of the counts, as for a trajectory read at once."""

    name = "rdf"
    Params = RdfParams

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        edges = self.params.edges
        self._shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
        self._histogram = np.zeros(len(edges) - 1)
        self._density_sum = self._atoms_sum = 0.0
        self._frames = 0

    def coordinates(self) -> dict[str, Coordinate]:
        edges = self.params.edges
        return {"r": Coordinate(0.5 * (edges[1:] + edges[:-1]), {"units": "angstrom", "long_name": "distance"},
                                np.column_stack([edges[:-1], edges[1:]]))}

    def variables(self) -> dict[str, Variable]:
        return {"rdf": Variable(("r",), {"units": "1", "long_name": "radial distribution function g(r)",
                                         "cell_methods": "time: mean"})}

    def one_frame(self, frame: Frame, cache: FrameCache) -> dict[str, Any]:
        data = cache.ovito(self.shape.periodic_z)
        data.apply(ovito_modifiers().CoordinationAnalysisModifier(cutoff=self.params.r_max_angstrom,
                                                                  number_of_bins=len(self._shell)))
        g = np.asarray(data.tables["coordination-rdf"].xy())[:, 1]
        n = len(frame.ids)
        cell_volume = abs(np.linalg.det(np.asarray(data.cell[...])[:, :3]))
        self._histogram += g * n * n / cell_volume * self._shell  # pairs (each counted from both atoms)
        self._density_sum += n / np.prod(frame.box_hi - frame.box_lo)
        self._atoms_sum += n
        self._frames += 1
        return {}

    def conclude(self) -> dict[str, Any]:
        density, atoms = self._density_sum / self._frames, self._atoms_sum / self._frames
        return {"rdf": self._histogram / self._frames / (atoms * density * self._shell)}
