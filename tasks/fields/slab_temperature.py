"""Local temperature per z-slab, each slab's drift removed (LAMMPS `temp/chunk ... com yes cdof -3`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from tasks.fields.base import FrameCache, SlabField, SlabGrid, SlabParams, Variable
from tasks.frame import Frame

BOLTZMANN_EV_PER_K = 8.617333262e-5
#: 1 amu Å²/ps² in eV.
AMU_A2_PS2_TO_EV = 1.0364269e-4


def slab_temperature_of(frame: Frame, grid: SlabGrid, include_fixed: bool = False,
                        slab: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Temperature (K) and atom count per slab with each slab's centre-of-mass motion removed.

    T = Σ m |v - v_com|² / ((3N - 3) k_B) over the slab's mobile atoms: the 3 degrees of
    freedom of the removed drift are not counted. Slabs with fewer than 2 atoms are NaN.
    """
    slab = grid.index(frame.positions[:, 2]) if slab is None else slab
    mask = slab >= 0 if include_fixed else (slab >= 0) & ~frame.fixed
    slab, masses, velocities = slab[mask], frame.masses[mask], frame.velocities[mask]
    n_slabs = len(grid.centres)
    counts = np.bincount(slab, minlength=n_slabs).astype(float)
    total_mass = np.bincount(slab, weights=masses, minlength=n_slabs)
    momentum = np.stack([np.bincount(slab, weights=masses * velocities[:, k], minlength=n_slabs) for k in range(3)], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        com_velocity = momentum / total_mass[:, None]
    relative = velocities - com_velocity[slab]
    kinetic = np.bincount(slab, weights=masses * np.einsum("ij,ij->i", relative, relative), minlength=n_slabs)
    with np.errstate(invalid="ignore", divide="ignore"):
        temperature = np.where(counts >= 2, kinetic * AMU_A2_PS2_TO_EV / ((3 * counts - 3) * BOLTZMANN_EV_PER_K),
                               np.nan)
    return temperature, counts


class SlabTemperatureParams(SlabParams):
    include_fixed: bool = Field(False, description="count the fixed atoms too (they have no velocity)")


class SlabTemperature(SlabField):
    """Temperature per z-slab over time (fixed atoms excluded) and the atoms it was taken over."""

    name = "slab_temperature"
    Params = SlabTemperatureParams

    def variables(self) -> dict[str, Variable]:
        return {"slab_temperature": Variable(("time", "z"), {"units": "K", "long_name": "local temperature "
                                             "(slab drift removed)", "cell_methods": "z: mean"}),
                "atoms_per_slab": Variable(("time", "z"), {"units": "1", "long_name": "mobile atoms in the slab"})}

    def one_frame(self, frame: Frame, cache: FrameCache) -> dict[str, Any]:
        grid = self.grid
        temperature, counts = slab_temperature_of(frame, grid, self.params.include_fixed, cache.slab(grid))
        return {"slab_temperature": temperature, "atoms_per_slab": counts}
