"""What every labeller shares: a name, a settings model, and an ASE calculator for a structure."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from ase import Atoms
from pydantic import Field

from tasks.plugin import Params


class Labeller(ABC):
    """A labeller plug-in: `name`, a `Settings` model and the calculator it labels with."""

    name: ClassVar[str]
    Settings: ClassVar[type[Params]]
    #: Plane-wave codes label isolated regions (cut-outs, clusters) in a periodic box with vacuum.
    periodic: ClassVar[bool] = True
    #: Elements it can label; None: any.
    elements: ClassVar[tuple[str, ...] | None] = None

    @abstractmethod
    def calculator(self, atoms: Atoms, settings: Any, work_dir: Path, name: str) -> Any:
        """An ASE calculator for `atoms` (writing its logs under `work_dir`)."""


class ExternalDftSettings(Params):
    """VASP or Quantum ESPRESSO through ASE; runs on clusters where the code is installed."""

    command: str = Field(description="the command line that runs the code, e.g. 'mpirun -np 32 vasp_std'")
    pseudopotential_dir: Path | None = None
    cutoff_ev: float = Field(380.0, gt=0, description="eV, plane-wave cutoff")
    kpoint_density_per_angstrom: float = Field(3.0, gt=0, description="k-points per reciprocal Å (×2π)")
    smearing_width_ev: float = Field(0.2, gt=0, description="eV, Methfessel-Paxton width")
    extra: dict[str, Any] = Field(default_factory=dict, description="passed to the ASE calculator unchanged")
