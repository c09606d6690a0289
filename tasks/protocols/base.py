"""What every MD protocol shares: its parameter blocks, its segments, the runner's questions.

A protocol is a list of `Segment`s, each a number of steps under LAMMPS commands (fixes
added for the segment and removed after it). The runner (`tasks.md.run_md`) asks a
protocol for its segments, the box height it needs (deposition grows), the temperature
the run starts at, and, after each frame, whether the run should stop early.

Parameter blocks are mixins of `MdParams`: `Length` (steps or duration), `Temperature`
(with an optional linear ramp) and `Thermostat`. Units are LAMMPS `metal` (Å, ps, eV, K)
with pressures in GPa; each field says its unit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal, Mapping

from ase import Atoms
from pydantic import Field, model_validator

from tasks.frame import Frame
from tasks.plugin import Params

GPA_TO_BAR = 1.0e4
METRE_PER_SECOND_TO_ANGSTROM_PER_PS = 0.01
#: Timesteps above this (ps) are legal but suspicious for Li: a warning, not a refusal.
SUSPICIOUS_TIMESTEP_PS = 0.01
SUSPICIOUS_STEPS = 10 ** 10


@dataclass
class Segment:
    """`steps` MD steps under `commands` (fixes added for this segment and removed after it)."""

    name: str
    steps: int
    commands: list[str]
    fix_ids: list[str]
    target_temperature: float | None = None  # the highest temperature it aims at (runaway check)


def fix_ids(commands: list[str]) -> list[str]:
    return [c.split()[1] for c in commands if c.startswith("fix ")]


class MdParams(Params):
    """Parameters of every protocol."""

    timestep: float = Field(0.001, gt=0, description="ps")
    trajectory_stride: int = Field(100, ge=1, description="steps between the frames handed to the fields")
    frame_average_steps: int = Field(0, ge=0, description="steps before each frame over which its time-averaged "
                                                          "positions are taken, about ten samples (structure "
                                                          "fields' time_averaged); 0: none")
    seed: int = Field(12345, ge=1, le=900_000_000, description="LAMMPS random seed (velocities, thermostat)")
    mpi_ranks: int = Field(1, ge=1, description="MPI ranks; > 1 runs the protocol as an MPI job")
    mpi_launcher: str = Field("mpirun -np {ranks}", description="command that starts the ranks, {ranks} filled in")

    @model_validator(mode="after")
    def _average_within_stride(self) -> "MdParams":
        if self.frame_average_steps > self.trajectory_stride:
            raise ValueError(f"frame_average_steps ({self.frame_average_steps}) exceeds trajectory_stride "
                             f"({self.trajectory_stride}): a frame's average is taken from the steps since the last")
        return self

    def warnings(self) -> list[str]:
        """Legal but suspicious values."""
        found = []
        if self.timestep > SUSPICIOUS_TIMESTEP_PS:
            found.append(f"timestep {self.timestep} ps is above {SUSPICIOUS_TIMESTEP_PS} ps: Li usually needs 0.5-2 fs")
        if self.mpi_ranks > 1 and self.mpi_launcher.split()[0] == "srun" and "--overlap" not in self.mpi_launcher:
            # the block's worker pool runs as an srun step holding the cores: a second step waits for them forever
            found.append(f"mpi_launcher {self.mpi_launcher!r} inside a Parsl block on SLURM waits for cores its own "
                         f"worker step holds; use 'srun --overlap --mpi=pmi2 -n {{ranks}}'")
        return found


class Length(MdParams):
    """How long a protocol runs: `steps`, or `duration` in ps (steps wins when both are given)."""

    steps: int | None = Field(None, ge=1, description="MD steps")
    duration: float | None = Field(None, gt=0, description="ps")

    @model_validator(mode="after")
    def _length_given(self) -> "Length":
        if self.steps is None and self.duration is None:
            raise ValueError("give 'steps' or 'duration' (ps)")
        return self

    @property
    def n_steps(self) -> int:
        return self.steps if self.steps is not None else max(1, round(self.duration / self.timestep))

    def warnings(self) -> list[str]:
        found = super().warnings()
        if self.steps is not None and self.duration is not None:
            found.append(f"both 'steps' ({self.steps}) and 'duration' ({self.duration} ps) are given: "
                         f"steps wins, the run is {self.steps * self.timestep:g} ps")
        if self.n_steps > SUSPICIOUS_STEPS:
            found.append(f"{self.n_steps:.3g} steps is more than any machine runs")
        return found


class Temperature(Params):
    temperature: float = Field(gt=0, description="K")
    temperature_end: float | None = Field(None, gt=0, description="K; ramps linearly from 'temperature' when given")

    @property
    def end(self) -> float:
        return self.temperature if self.temperature_end is None else self.temperature_end


class Thermostat(Params):
    thermostat: Literal["langevin", "nose_hoover", "berendsen"] = "langevin"
    damping_ps: float = Field(0.1, gt=0, description="ps, the thermostat's relaxation time")


def thermostat_commands(group: str, start: float, end: float, params: Thermostat, seed: int, fix_id: str) -> list[str]:
    """LAMMPS fixes that hold `group` at a temperature going from `start` to `end` (K)."""
    if params.thermostat == "langevin":
        return [f"fix {fix_id}_nve {group} nve",
                f"fix {fix_id} {group} langevin {start} {end} {params.damping_ps} {seed}"]
    if params.thermostat == "nose_hoover":
        return [f"fix {fix_id} {group} nvt temp {start} {end} {params.damping_ps}"]
    return [f"fix {fix_id}_nve {group} nve", f"fix {fix_id} {group} temp/berendsen {start} {end} {params.damping_ps}"]


Stopper = Callable[[Frame], "str | None"]


class Protocol(ABC):
    """An MD protocol plug-in: `name`, a `Params` model and its segments."""

    name: ClassVar[str]
    Params: ClassVar[type[MdParams]]

    def parse(self, params: Mapping[str, Any] | MdParams) -> MdParams:
        """Validated parameters (raises pydantic's ValidationError)."""
        if isinstance(params, self.Params):
            return params
        if isinstance(params, MdParams):
            params = params.model_dump(exclude_unset=True)
        return self.Params.model_validate(dict(params))

    @abstractmethod
    def segments(self, params: Any, atoms: Atoms) -> list[Segment]:
        """The segments for these parameters and this starting structure (ValueError if impossible)."""

    def initial_temperature(self, params: Any) -> float:
        """Temperature (K) of the velocities the run starts with."""
        return float(params.temperature)

    def box_height(self, params: Any, atoms: Atoms) -> float | None:
        """Box height (Å) the run needs, when taller than the structure's cell (growth)."""
        return None

    def max_atoms(self, params: Any, atoms: Atoms) -> int:
        """The most atoms the run can hold."""
        return len(atoms)

    def stopper(self, params: Any, atoms: Atoms) -> Stopper | None:
        """A function of each frame that returns why the run should stop now, or None."""
        return None

    def total_steps(self, params: Any, atoms: Atoms) -> int:
        return sum(segment.steps for segment in self.segments(params, atoms))

    def n_frames(self, params: Any, atoms: Atoms) -> int:
        """Frames the fields receive: one every `trajectory_stride` steps (at most, with a stopper)."""
        return self.total_steps(params, atoms) // params.trajectory_stride

    def check(self, params: Any, atoms: Atoms) -> list[str]:
        """Problems that need the structure: impossible segments, a run shorter than one frame."""
        try:
            total = self.total_steps(params, atoms)
        except ValueError as error:
            return [str(error)]
        if total < params.trajectory_stride:
            return [f"trajectory_stride {params.trajectory_stride} is longer than the run ({total} steps): "
                    f"no frame would be recorded"]
        return []
