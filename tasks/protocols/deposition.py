"""Deposition as in the self-healing study: Li generated at the top of the box falls onto a slab.

Atoms appear every `1 / (rate × timestep)` steps in a 1 Å layer at the top of a box tall
enough for the whole deposit, uniformly over the surface or inside given rectangles and
circles (tip deposition), falling at `falling_speed`. They are integrated NVE and
thermalise by contact; only the original substrate is thermostatted (optionally only its
lowest `thermostat_height_angstrom`), so the heat they bring leaves through the substrate
and a hot top at high rates is a result, not an artefact of thermostatting falling atoms.

The box stays periodic in z with an empty gap above a harmonic wall: DeePMD's LAMMPS pair
style lost atoms in dynamics with a non-periodic z boundary. With
`stop_at_deposit_height_angstrom` the run ends at the first frame whose landed deposit is
that tall (the study's tip sweep compares runs at one deposit height).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from ase import Atoms
from pydantic import Field, model_validator

from tasks.fields.deposit_geometry import deposit_height, substrate_top
from tasks.frame import Frame
from tasks.geometry import IMAGE_GAP_ANGSTROM
from tasks.plugin import Params
from tasks.protocols.base import (METRE_PER_SECOND_TO_ANGSTROM_PER_PS, Length, Protocol, Segment, Stopper, fix_ids,
                                  thermostat_commands)

BCC_LI_ATOMS_PER_CUBIC_ANGSTROM = 2 / 3.51 ** 3


class DepositionRegion(Params):
    """A circle (x, y, radius) or a rectangle (x_min, x_max, y_min, y_max), Å in the box."""

    x: float | None = None
    y: float | None = None
    radius: float | None = Field(None, gt=0)
    x_min: float | None = None
    x_max: float | None = None
    y_min: float | None = None
    y_max: float | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> "DepositionRegion":
        circle = [self.x, self.y, self.radius]
        rectangle = [self.x_min, self.x_max, self.y_min, self.y_max]
        if all(v is not None for v in circle) and all(v is None for v in rectangle):
            return self
        if all(v is not None for v in rectangle) and all(v is None for v in circle):
            if self.x_min >= self.x_max or self.y_min >= self.y_max:
                raise ValueError("a rectangle needs x_min < x_max and y_min < y_max")
            return self
        raise ValueError("a region is either a circle {x, y, radius} or a rectangle {x_min, x_max, y_min, y_max}")

    def command(self, region_id: str, z_lo: float, z_hi: float) -> str:
        if self.radius is not None:
            return f"region {region_id} cylinder z {self.x} {self.y} {self.radius} {z_lo} {z_hi} units box"
        return f"region {region_id} block {self.x_min} {self.x_max} {self.y_min} {self.y_max} {z_lo} {z_hi} units box"

    def outside(self, lx: float, ly: float) -> bool:
        if self.radius is not None:
            return not (0 <= self.x <= lx and 0 <= self.y <= ly)
        return self.x_max <= 0 or self.x_min >= lx or self.y_max <= 0 or self.y_min >= ly


class DepositionParams(Length):
    temperature: float = Field(gt=0, description="K, of the substrate's thermostat")
    rate: float = Field(gt=0, description="Li/ps generated")
    falling_speed: float = Field(gt=0, description="m/s, downwards")
    thermostat: Literal["langevin", "berendsen"] = Field(
        "langevin", description="couples the substrate only, so Nosé-Hoover (a global thermostat) cannot be used")
    damping_ps: float = Field(0.1, gt=0, description="ps, thermostat relaxation time")
    thermostat_height_angstrom: float | None = Field(
        None, gt=0, description="Å above the fixed layers; only substrate atoms this low are thermostatted")
    insertion_height_angstrom: float = Field(8.0, gt=0, description="Å between the highest the deposit can "
                                                                      "grow and where atoms appear")
    regions: list[DepositionRegion] | None = Field(None, description="where atoms appear; default the whole surface")
    stop_at_deposit_height_angstrom: float | None = Field(None, gt=0, description="Å; end the run when the landed "
                                                                                    "deposit is this tall")

    @model_validator(mode="after")
    def _schedule_possible(self) -> "DepositionParams":
        every = round(1.0 / (self.rate * self.timestep))
        if every < 1:
            raise ValueError(f"rate {self.rate} Li/ps is more than one atom per step at timestep {self.timestep} ps")
        if self.n_steps // every < 1:
            raise ValueError(f"rate {self.rate} Li/ps over {self.n_steps * self.timestep:g} ps deposits no atom")
        return self

    @property
    def insertion_every(self) -> int:
        """Steps between two insertions."""
        return int(round(1.0 / (self.rate * self.timestep)))

    @property
    def n_insert(self) -> int:
        return self.n_steps // self.insertion_every


def deposition_schedule(rate_per_ps: float, duration_ps: float, timestep_ps: float) -> tuple[int, int]:
    """(atoms to insert, steps between insertions) for a generation rate in atoms/ps."""
    params = DepositionParams(temperature=300.0, rate=rate_per_ps, falling_speed=1.0, duration=duration_ps,
                              timestep=timestep_ps)
    return params.n_insert, params.insertion_every


def _substrate_ids(params: DepositionParams, atoms: Atoms) -> np.ndarray:
    """LAMMPS ids (1-based) of the thermostatted substrate atoms."""
    fixed = atoms.arrays.get("fixed", np.zeros(len(atoms), dtype=bool)).astype(bool)
    substrate = np.flatnonzero(~fixed) + 1
    if params.thermostat_height_angstrom is not None:
        base = atoms.positions[fixed, 2].max() if fixed.any() else atoms.positions[:, 2].min()
        z = atoms.positions[substrate - 1, 2]
        substrate = substrate[z <= base + params.thermostat_height_angstrom]
    if len(substrate) == 0:
        raise ValueError("no substrate atoms to thermostat: check fixed_layers and thermostat_height_angstrom")
    return substrate


class Deposition(Protocol):
    name = "deposition"
    Params = DepositionParams

    def max_atoms(self, params: DepositionParams, atoms: Atoms) -> int:
        return len(atoms) + params.n_insert

    def box_height(self, params: DepositionParams, atoms: Atoms) -> float:
        """Holds the slab, everything deposited (at ≥ bcc Li density), the insertion gap and the image gap."""
        area = atoms.cell[0, 0] * atoms.cell[1, 1]
        growth = params.n_insert / (BCC_LI_ATOMS_PER_CUBIC_ANGSTROM * area)
        wall = atoms.positions[:, 2].max() + growth + params.insertion_height_angstrom + 4.0
        return float(wall + IMAGE_GAP_ANGSTROM)

    def segments(self, params: DepositionParams, atoms: Atoms) -> list[Segment]:
        speed = params.falling_speed * METRE_PER_SECOND_TO_ANGSTROM_PER_PS
        lx, ly = atoms.cell[0, 0], atoms.cell[1, 1]
        z_wall = self.box_height(params, atoms) - IMAGE_GAP_ANGSTROM
        z_hi = z_wall - 2.0
        z_lo = z_hi - 1.0
        regions = params.regions or [DepositionRegion(x_min=0.0, x_max=lx, y_min=0.0, y_max=ly)]
        outside = [k for k, region in enumerate(regions) if region.outside(lx, ly)]
        if outside:
            raise ValueError(f"regions {outside} lie outside the {lx:.1f} x {ly:.1f} Å surface")
        commands = [region.command(f"dep{k}", z_lo, z_hi) for k, region in enumerate(regions)]
        if len(regions) > 1:
            commands.append(f"region deposit union {len(regions)} {' '.join(f'dep{k}' for k in range(len(regions)))}")
        region = "deposit" if len(regions) > 1 else "dep0"
        substrate = _substrate_ids(params, atoms)
        commands += [f"group heat_sink id {' '.join(map(str, substrate[i:i + 400]))}"
                     for i in range(0, len(substrate), 400)]
        coupling = [c for c in thermostat_commands("heat_sink", params.temperature, params.temperature, params,
                                                   params.seed, "thermostat") if " nve" not in c]
        commands += [
            f"fix deposit mobile deposit {params.n_insert} 1 {params.insertion_every} {params.seed} region {region} "
            f"near 2.0 vz {-speed} {-speed} attempt 100 id max units box",
            f"region below_wall block INF INF INF INF INF {z_wall} side in units box",
            "fix top_wall mobile wall/region below_wall harmonic 5.0 1.0 1.5",
            "compute_modify thermo_temp dynamic/dof yes",
            "fix integrate mobile nve",
            *coupling,
        ]
        return [Segment(self.name, params.n_steps, commands, fix_ids(commands), params.temperature)]

    def stopper(self, params: DepositionParams, atoms: Atoms) -> Stopper | None:
        target = params.stop_at_deposit_height_angstrom
        if target is None:
            return None
        substrate: list[float] = []  # its top in the first frame, as the deposit_geometry field takes it

        def stop(frame: Frame) -> str | None:
            if not substrate:
                substrate.append(substrate_top(frame, len(atoms)))
            height = deposit_height(frame, substrate[0])
            return f"deposit height {height:.1f} Å reached {target} Å" if height >= target else None

        return stop
