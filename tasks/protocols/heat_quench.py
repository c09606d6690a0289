"""Heat, quench at a rate, equilibrate (Nosé-Hoover), as in the glassy-nucleation study."""

from __future__ import annotations

from typing import Literal

from ase import Atoms
from pydantic import Field

from tasks.protocols.base import MdParams, Protocol, Segment, Thermostat, fix_ids, thermostat_commands


class HeatQuenchParams(MdParams, Thermostat):
    temperature_heat: float = Field(gt=0, description="K, held first")
    heat_duration: float = Field(gt=0, description="ps at temperature_heat")
    temperature: float = Field(gt=0, description="K, quenched to and held")
    quench_rate: float = Field(1.0, gt=0, description="K/ps")
    duration: float = Field(gt=0, description="ps at the final temperature")
    thermostat: Literal["langevin", "nose_hoover", "berendsen"] = "nose_hoover"


class HeatQuench(Protocol):
    name = "heat_quench"
    Params = HeatQuenchParams

    def initial_temperature(self, params: HeatQuenchParams) -> float:
        return params.temperature_heat

    def segments(self, params: HeatQuenchParams, atoms: Atoms) -> list[Segment]:
        hot, cold, dt = params.temperature_heat, params.temperature, params.timestep
        stages = [("heat", hot, hot, max(1, round(params.heat_duration / dt))),
                  ("quench", hot, cold, max(1, round(abs(hot - cold) / params.quench_rate / dt))),
                  ("equilibrate", cold, cold, max(1, round(params.duration / dt)))]
        segments = []
        for name, start, end, steps in stages:
            commands = thermostat_commands("mobile", start, end, params, params.seed, name)
            segments.append(Segment(name, steps, commands, fix_ids(commands), max(start, end)))
        return segments
