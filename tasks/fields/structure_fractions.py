"""bcc/fcc/hcp/other fractions by adaptive common neighbour analysis, total and per slab."""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.fields.base import Coordinate, FrameCache, SlabField, Variable
from tasks.fields.neighbours import STRUCTURES, adaptive_cna
from tasks.frame import Frame


def structure_types(cache: FrameCache, periodic_z: bool) -> np.ndarray:
    """Adaptive CNA of each atom as an index into STRUCTURES (OVITO's types, icosahedral as other)."""
    frame = cache.frame
    return adaptive_cna(frame.positions, frame.box_lo, frame.box_hi, (True, True, periodic_z))


class StructureFractions(SlabField):
    name = "structure_fractions"

    def coordinates(self) -> dict[str, Coordinate]:
        return {**super().coordinates(),
                "structure": Coordinate(np.array(STRUCTURES, dtype=object), {"long_name": "a-CNA structure type"})}

    def variables(self) -> dict[str, Variable]:
        return {"structure_fraction": Variable(("time", "structure"), {"units": "1", "long_name":
                                               "fraction of atoms (adaptive CNA)"}),
                "structure_fraction_by_slab": Variable(("time", "z", "structure"), {
                    "units": "1", "long_name": "fraction of the slab's atoms (adaptive CNA)"})}

    def one_frame(self, frame: Frame, cache: FrameCache) -> dict[str, Any]:
        kind = structure_types(cache, self.shape.periodic_z)
        slab = cache.slab(self.grid)
        n = self.n_slabs
        inside = slab >= 0
        table = np.bincount(slab[inside] * 4 + kind[inside], minlength=4 * n).reshape(n, 4).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            by_slab = table / table.sum(axis=1, keepdims=True)
        return {"structure_fraction": np.bincount(kind, minlength=4) / len(kind), "structure_fraction_by_slab": by_slab}
