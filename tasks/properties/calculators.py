"""The potentials a property can be computed with, as `CalculatorFactory`s.

* a classical potential of `tasks.potentials` (`snap`, `meam`, ...): LAMMPS through ASE's
  `LAMMPSlib`, kept alive between the steps of a relaxation;
* a frozen DeePMD model (`.pth`): DeePMD-kit's own ASE calculator;
* a labeller (`gpaw`, `vasp`, `qe`) with its settings: the DFT reference column, each
  structure's files under `work_dir/<name>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ase import Atoms

from tasks.properties.base import CalculatorFactory


def classical_calculators(name: str) -> CalculatorFactory:
    from tasks.potentials import classical
    from tasks.runtime import prepare_process

    potential = classical(name)  # KeyError naming the known ones
    prepare_process()

    def make(atoms: Atoms, label: str) -> Any:
        from ase.calculators.lammpslib import LAMMPSlib

        return LAMMPSlib(lmpcmds=potential.pair_commands(), atom_types={e: i + 1 for i, e in
                                                                         enumerate(potential.elements)},
                         atom_type_masses={"Li": 6.94}, log_file=None, keep_alive=True)

    return make


def deepmd_calculators(model: str | Path) -> CalculatorFactory:
    model = Path(model)
    if not model.is_file():
        raise FileNotFoundError(f"no DeePMD model at {model}")
    from tasks.runtime import prepare_process

    prepare_process()

    def make(atoms: Atoms, label: str) -> Any:
        from deepmd.calculator import DP

        return DP(model=str(model))

    return make


def labeller_calculators(engine: str, settings: dict[str, Any], work_dir: str | Path) -> CalculatorFactory:
    """A DFT code's calculators. A k-point mesh from a density depends on the cell, so the
    volumes of an EOS or the strains of an elastic constant could be sampled by different
    meshes (a jump in energy, not physics): cells of the same atoms within 10 % of one seen
    before get its mesh."""
    import numpy as np

    from tasks.labellers import LABELLERS
    from tasks.labellers.base import KpointSampling

    labeller = LABELLERS[engine]
    parsed = labeller.Settings(**settings)
    work_dir = Path(work_dir)
    seen: list[tuple[int, Any, tuple[int, int, int]]] = []  # (atoms, cell, mesh)

    def make(atoms: Atoms, label: str) -> Any:
        chosen = parsed
        if isinstance(parsed, KpointSampling) and parsed.kpoint_mesh is None:
            mesh = next((m for n, cell, m in seen if n == len(atoms) and
                         np.allclose(cell, atoms.cell.array, rtol=0.1, atol=0.3)), None)
            if mesh is None:
                mesh = parsed.mesh(atoms)
                seen.append((len(atoms), atoms.cell.array.copy(), mesh))
            chosen = parsed.model_copy(update={"kpoint_mesh": mesh})
        return labeller.calculator(atoms, chosen, work_dir, label)

    return make


@dataclass(frozen=True)
class PropertyPotential:
    """A potential as a property column: its label in the table and how to make its calculators."""

    label: str  # 'snap', 'final_model', 'member-2', 'gpaw', a model file's name
    kind: Literal["classical", "deepmd", "dft"]
    source: str  # the classical potential's name, the model file, or the labeller
    settings: dict[str, Any] = field(default_factory=dict)  # a labeller's settings, defaults filled in

    def calculators(self, work_dir: str | Path) -> CalculatorFactory:
        if self.kind == "classical":
            return classical_calculators(self.source)
        if self.kind == "deepmd":
            return deepmd_calculators(self.source)
        return labeller_calculators(self.source, self.settings, work_dir)

    def md_model(self, work_dir: str | Path) -> str:
        """The DeePMD model MD runs (`tasks.train.md_model`): a member's own compressed copy, else
        the frozen one compressed into `work_dir`."""
        from tasks.train import md_model

        return md_model(self.source, Path(work_dir) / "model-compressed.pth")

    def pair_commands(self, md_model: str | None = None) -> list[str] | None:
        """What LAMMPS runs this potential with (for properties that run MD; a DeePMD potential
        with its `md_model`); None for a DFT code."""
        from tasks.potentials import DeepmdPotential, classical

        if self.kind == "classical":
            return classical(self.source).pair_commands()
        if self.kind == "deepmd":
            return DeepmdPotential().pair_commands([md_model or self.source], None, 0)
        return None
