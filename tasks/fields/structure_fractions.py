"""bcc/fcc/hcp/other fractions by adaptive common neighbour analysis, total and per slab."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field as ParamField

from tasks.fields.base import Coordinate, FrameCache, SlabField, SlabParams, Variable
from tasks.fields.neighbours import STRUCTURES, adaptive_cna
from tasks.frame import Frame


def structure_types(cache: FrameCache, periodic_z: bool, time_averaged: bool = False) -> np.ndarray:
    """Adaptive CNA of each atom as an index into STRUCTURES (OVITO's types, icosahedral as other),
    of the frame's instantaneous or its time-averaged positions."""
    frame = cache.frame
    positions = frame.mean_positions if time_averaged else frame.positions
    if positions is None:
        raise ValueError("time_averaged structure fractions need the MD's frame_average_steps > 0 "
                         "(time-averaged positions are recorded by the run, not found in a trajectory)")
    return adaptive_cna(positions, frame.box_lo, frame.box_hi, (True, True, periodic_z))


class StructureFractionsParams(SlabParams):
    # A hot crystal's instantaneous positions scatter: at 300 K a-CNA calls a quarter of the interior
    # atoms of SNAP's bcc Li slab, a potential that keeps bcc, something else (README, "a-CNA of a
    # hot crystal"). Averaged over a few tenths of a picosecond (several vibration periods, far
    # less than a crystal's atoms take to move away) the crystal is seen, and a liquid's averages
    # are no lattice at all.
    time_averaged: bool = ParamField(False, description="a-CNA of the positions averaged over the MD's "
                                                        "frame_average_steps before each frame")


class StructureFractions(SlabField):
    name = "structure_fractions"
    Params = StructureFractionsParams

    def coordinates(self) -> dict[str, Coordinate]:
        return {**super().coordinates(),
                "structure": Coordinate(np.array(STRUCTURES, dtype=object), {"long_name": "a-CNA structure type"})}

    def variables(self) -> dict[str, Variable]:
        return {"structure_fraction": Variable(("time", "structure"), {"units": "1", "long_name":
                                               "fraction of atoms (adaptive CNA)"}),
                "structure_fraction_by_slab": Variable(("time", "z", "structure"), {
                    "units": "1", "long_name": "fraction of the slab's atoms (adaptive CNA)"})}

    def one_frame(self, frame: Frame, cache: FrameCache) -> dict[str, Any]:
        kind = structure_types(cache, self.shape.periodic_z, self.params.time_averaged)
        slab = cache.slab(self.grid)
        n = self.n_slabs
        inside = slab >= 0
        table = np.bincount(slab[inside] * 4 + kind[inside], minlength=4 * n).reshape(n, 4).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            by_slab = table / table.sum(axis=1, keepdims=True)
        return {"structure_fraction": np.bincount(kind, minlength=4) / len(kind), "structure_fraction_by_slab": by_slab}
