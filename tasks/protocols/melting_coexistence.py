"""Solid-liquid coexistence: melt the upper half with the lower half held, then run both NVE."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from pydantic import Field

from tasks.protocols.base import Length, Protocol, Segment, Thermostat, fix_ids, thermostat_commands


class MeltingCoexistenceParams(Length, Thermostat):
    temperature: float = Field(gt=0, description="K, of the solid half when coexistence starts")
    temperature_melt: float | None = Field(None, gt=0, description="K, of the melt; default twice 'temperature'")
    melt_duration: float = Field(5.0, gt=0, description="ps of melting the upper half")


class MeltingCoexistence(Protocol):
    name = "melting_coexistence"
    Params = MeltingCoexistenceParams

    def initial_temperature(self, params: MeltingCoexistenceParams) -> float:
        return params.temperature_melt or 2.0 * params.temperature

    def segments(self, params: MeltingCoexistenceParams, atoms: Atoms) -> list[Segment]:
        hot = self.initial_temperature(params)
        z_mid = float(np.mean(atoms.positions[:, 2]))
        melt = [f"region upper block INF INF INF INF {z_mid} INF units box",
                "group liquid region upper", "group solid subtract all liquid",
                "fix hold_solid solid setforce 0.0 0.0 0.0", "velocity solid set 0.0 0.0 0.0",
                *thermostat_commands("liquid", hot, hot, params, params.seed, "melt")]
        coexist = [f"velocity solid create {params.temperature} {params.seed + 1} dist gaussian",
                   "fix coexist all nve"]
        return [Segment("melt", max(1, round(params.melt_duration / params.timestep)), melt, fix_ids(melt), hot),
                Segment("coexistence", params.n_steps, coexist, ["coexist"], max(hot, params.temperature))]
