"""What every labeller shares: a name, a settings model, and an ASE calculator for a structure."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Iterator

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

    @contextmanager
    def resumable_calculator(self, atoms: Atoms, settings: Any, work_dir: Path, name: str) -> Iterator[Any]:
        """The calculator of one single point that a killed task, run again with the same
        `work_dir` and `name`, resumes where it stopped; where the engine cannot, `calculator`.
        What it keeps to resume from lives until the context ends, with or without a result."""
        yield self.calculator(atoms, settings, work_dir, name)


class KpointSampling(Params):
    """The Brillouin-zone sampling of a plane-wave code: a Monkhorst-Pack mesh from a density
    (1 along vacuum), or a fixed mesh. Properties compare energies of one cell at several
    volumes or strains: they fix the mesh of the first so that it cannot jump between them."""

    kpoint_density_per_angstrom: float = Field(3.0, gt=0, description="k-points per reciprocal Å (×2π)")
    kpoint_mesh: tuple[int, int, int] | None = Field(None, description="a fixed mesh; unset: from the density")

    def mesh(self, atoms: Atoms) -> tuple[int, int, int]:
        from tasks.geometry import kpoint_mesh

        return self.kpoint_mesh or kpoint_mesh(atoms, self.kpoint_density_per_angstrom)


class ExternalDftSettings(KpointSampling):
    """VASP or Quantum ESPRESSO through ASE; runs on clusters where the code is installed."""

    command: str = Field(description="the command line that runs the code, e.g. 'mpirun -np 32 vasp_std'")
    pseudopotential_dir: Path | None = None
    cutoff_ev: float = Field(380.0, gt=0, description="eV, plane-wave cutoff")
    smearing_width_ev: float = Field(0.2, gt=0, description="eV, Methfessel-Paxton width")
    extra: dict[str, Any] = Field(default_factory=dict, description="passed to the ASE calculator unchanged")
