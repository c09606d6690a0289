"""Mean potential energy per atom, over the box and per z-slab."""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.fields.base import Coordinate, FrameCache, FrameField, SlabGrid, SlabParams, Variable
from tasks.frame import Frame


class PotentialEnergy(FrameField):
    name = "potential_energy"
    Params = SlabParams

    @property
    def grid(self) -> SlabGrid:
        return SlabGrid.for_shape(self.shape, self.params.slab_width_angstrom)

    def coordinates(self) -> dict[str, Coordinate]:
        return {"z": self.grid.coordinate()}

    def variables(self) -> dict[str, Variable]:
        # float64: a mean of about -1.9 eV/atom whose meV changes matter
        return {"potential_energy": Variable(("time",), {"units": "eV/atom", "long_name": "mean potential energy"},
                                             "float64"),
                "potential_energy_by_slab": Variable(("time", "z"), {"units": "eV/atom", "long_name":
                                                     "mean potential energy in the slab"}, "float64")}

    def one_frame(self, frame: Frame, cache: FrameCache) -> dict[str, Any]:
        slab = cache.slab(self.grid)
        inside = slab >= 0
        n = len(self.grid.centres)
        counts = np.bincount(slab[inside], minlength=n)
        sums = np.bincount(slab[inside], weights=frame.potential_energy[inside], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            by_slab = np.where(counts > 0, sums / counts, np.nan)
        return {"potential_energy": float(frame.potential_energy.mean()), "potential_energy_by_slab": by_slab}
