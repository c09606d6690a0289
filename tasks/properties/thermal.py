"""What the finite-temperature properties share: a periodic bcc Li box in LAMMPS with the
potential's own pair style, brought to a temperature at zero pressure, sampled while it runs,
and the statistics of those samples.

The properties that use it (`melting_point`, `thermal_expansion`, `elastic_at_temperature`,
`self_diffusion`) each run one LAMMPS instance per temperature, so one temperature's result
never depends on another's history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import numpy as np
from pydantic import Field, field_validator

from tasks.properties.eos import AtEquilibrium

T = TypeVar("T")

LI_MASS = 6.94
#: Below this a-CNA bcc fraction of 0.3 ps averages a box is not a bcc crystal: the DeePMD
#: members' 54-atom bulk reads 0.97-1.00 to 400 K and SNAP's 0.999 at 300 K; MEAM's lattice
#: (bcc dynamically unstable) 0.45 at 300 K, and a melt under 0.1.
MIN_CRYSTAL_BCC = 0.8


class FiniteTemperatureParams(AtEquilibrium):
    """A list of temperatures, a periodic bcc box of `cells`, and the MD settings at each."""

    temperatures_k: list[float] = Field([100.0, 200.0, 300.0, 400.0], min_length=1, description="K, ascending")
    cells: tuple[int, int, int] = Field((6, 6, 6), description="conventional bcc cells along x, y, z")
    timestep_fs: float = Field(1.0, gt=0, le=5.0, description="fs")
    equilibrate_ps: float = Field(5.0, gt=0, description="ps at the temperature before anything is measured (NVT "
                                                         "at the guess where the zero-pressure box is searched, "
                                                         "else NPT at zero pressure)")
    seed: int = Field(7, ge=1, description="velocities; each temperature adds its own value to it")

    @field_validator("temperatures_k")
    @classmethod
    def _ascending(cls, temperatures: list[float]) -> list[float]:
        if any(t <= 0 for t in temperatures) or temperatures != sorted(set(temperatures)):
            raise ValueError("temperatures must be positive, distinct and ascending")
        return temperatures

    @field_validator("cells")
    @classmethod
    def _three(cls, cells: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(cells) < 3:
            raise ValueError("at least 3 cells a side: a smaller periodic box sees its own images as neighbours")
        return cells

    @property
    def atoms(self) -> int:
        return 2 * int(np.prod(self.cells))

    def steps(self, ps: float) -> int:
        return max(1, round(ps * 1000 / self.timestep_fs))

    def seed_at(self, temperature: float) -> int:
        return self.seed + int(temperature)


class ZeroPressureParams(FiniteTemperatureParams):
    """The settings of the zero-pressure search (`zero_pressure_crystal`), which the properties
    that measure in that box also use for their own averages."""

    settle_ps: float = Field(1.0, gt=0, description="ps of NVT after each change of the box before anything is "
                                                    "averaged")
    average_ps: float = Field(5.0, gt=0, description="ps over which each pressure (and each stress) is averaged")
    samples: int = Field(100, ge=10, description="samples over average_ps (5 blocks for the error)")


def bcc_box(params: FiniteTemperatureParams, lattice_constant: float, pair_commands: list[str]) -> Any:
    """A new LAMMPS instance holding the perfect periodic bcc box of `params.cells`."""
    from tasks.runtime import new_lammps

    lmp = new_lammps()
    nx, ny, nz = params.cells
    lmp.commands_list([
        "units metal", "boundary p p p", "atom_style atomic", f"lattice bcc {lattice_constant}",
        f"region box block 0 {nx} 0 {ny} 0 {nz}", "create_box 1 box", "create_atoms 1 box", f"mass 1 {LI_MASS}",
        *pair_commands, f"timestep {params.timestep_fs / 1000}", "thermo 0"])
    return lmp


def thermalise(lmp: Any, temperature: float, seed: int, group: str = "all") -> None:
    """Maxwell-Boltzmann velocities at `temperature`, no net momentum."""
    lmp.command(f"velocity {group} create {temperature} {seed} dist gaussian mom yes rot no")


def npt_command(fix_id: str, temperature: float, timestep_fs: float, barostat: str = "iso", group: str = "all"
                ) -> str:
    """Nosé-Hoover NPT at zero pressure; `barostat` is LAMMPS' keyword (`iso`, `aniso`, `z`):
    the damping times are 100 and 1000 steps, LAMMPS' recommendation."""
    dt = timestep_fs / 1000
    return f"fix {fix_id} {group} npt temp {temperature} {temperature} {100 * dt} {barostat} 0 0 {1000 * dt}"


def nph_command(fix_id: str, timestep_fs: float, barostat: str = "iso") -> str:
    """Zero pressure without a thermostat (the energy, less the barostat's work, conserved); the
    barostat damped as `npt_command`'s."""
    dt = timestep_fs / 1000
    return f"fix {fix_id} all nph {barostat} 0 0 {1000 * dt}"


def nvt_command(fix_id: str, temperature: float, timestep_fs: float, group: str = "all") -> str:
    dt = timestep_fs / 1000
    return f"fix {fix_id} {group} nvt temp {temperature} {temperature} {100 * dt}"


def run_sampled(lmp: Any, total_steps: int, samples: int, sample: Callable[[], T]) -> tuple[np.ndarray, list[T]]:
    """Runs `total_steps` in `samples` equal pieces, calling `sample` after each; returns the
    steps after the start at which it was called, and what it returned. A fix defined just
    before is set up by the first piece, the others skip LAMMPS' setup."""
    every = max(1, total_steps // samples)
    at, values = [], []
    for k in range(every, total_steps + 1, every):
        lmp.command(f"run {every} pre {'yes' if k == every else 'no'} post no")
        at.append(k)
        values.append(sample())
    return np.array(at), values


def box_lengths(lmp: Any) -> np.ndarray:
    """The orthorhombic box's edge lengths (Å)."""
    box_lo, box_hi, *_ = lmp.extract_box()
    return np.array(box_hi) - np.array(box_lo)


def set_box_lengths(lmp: Any, lengths: np.ndarray) -> None:
    """Scales the box (and the atoms with it) to `lengths`, about its centre."""
    scale = np.asarray(lengths) / box_lengths(lmp)
    lmp.command("change_box all " + " ".join(f"{axis} scale {s:.12f}" for axis, s in zip("xyz", scale)) + " remap")


def stress_gpa(lmp: Any) -> np.ndarray:
    """The instantaneous stress σ = -P (GPa) in Voigt order xx, yy, zz, yz, xz, xy, kinetic part
    included."""
    return -np.array([lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")]) / 1e4


def unwrapped_positions(lmp: Any) -> np.ndarray:
    """Every atom's position (Å), ordered by id and unwrapped by its image flags (exact at
    constant volume)."""
    from tasks.md import gathered, unwrap

    ids = gathered(lmp, "id", 1).ravel()
    order = np.argsort(ids)
    box_lo, box_hi, *_ = lmp.extract_box()
    return unwrap(gathered(lmp, "x", 3)[order], gathered(lmp, "image", 1).ravel()[order], np.array(box_lo),
                  np.array(box_hi))


@dataclass(frozen=True)
class ZeroPressure:
    """The cubic box at a temperature where the mean pressure is zero, from NVT runs at a few
    lattice constants: the lattice constant where the line through their mean pressures
    crosses zero, and the isothermal bulk modulus -V dP/dV = -(a/3) dP/da from its slope."""

    lattice_constant_angstrom: float
    lattice_constant_error_angstrom: float  # the pressures' standard errors carried through the line
    bulk_modulus_gpa: float
    bulk_modulus_error_gpa: float
    points: list[tuple[float, float, float]]  # (a Å, mean P GPa, its standard error) of each run


class NoStableCrystal(ValueError):
    """No zero-pressure box at a temperature: the mean pressure does not fall as the box grows,
    because the crystal has melted or is mechanically unstable there. A finding about the
    potential at that temperature, not an error of the run; `bcc_fraction` tells which."""

    def __init__(self, message: str, bcc_fraction: float):
        super().__init__(f"{message} (a-CNA bcc fraction {bcc_fraction:.2f} after it)")
        self.bcc_fraction = bcc_fraction


def zero_pressure_box(lmp: Any, params: FiniteTemperatureParams, temperature: float, guess_angstrom: float,
                      settle_ps: float, average_ps: float, samples: int, step: float = 0.003) -> ZeroPressure:
    """NVT at `guess_angstrom`, at `guess × (1 ± step)` on the side the pressure points to,
    then at the secant's root, `settle_ps` and `average_ps` each; the box is left at the root.

    A barostat's box oscillates with a period of picoseconds at these sizes, so the mean of
    a short NPT run is biased by where the oscillation happens to stop; a mean pressure at
    fixed volume converges within a picosecond or two, and a line through three of them
    near zero gives the volume to a few parts in 10^4. The slope is a secant over about 1 % in
    volume: B_T is biased by about B' times half that (a few %), less than its noise at T > 0.
    """
    cells = np.array(params.cells, dtype=float)
    lmp.command(nvt_command("zero_pressure", temperature, params.timestep_fs))

    def mean_pressure(a: float) -> tuple[float, float]:
        set_box_lengths(lmp, a * cells)
        lmp.command(f"run {params.steps(settle_ps)}")
        _, pressures = run_sampled(lmp, params.steps(average_ps), samples, lambda: lmp.get_thermo("press") / 1e4)
        return float(np.mean(pressures)), float(block_error(np.array(pressures)))

    a = [guess_angstrom]
    p = [mean_pressure(guess_angstrom)]
    a.append(guess_angstrom * (1 + step if p[0][0] > 0 else 1 - step))
    p.append(mean_pressure(a[1]))
    slope = (p[1][0] - p[0][0]) / (a[1] - a[0])
    if slope >= 0:
        lmp.command("unfix zero_pressure")
        raise NoStableCrystal(f"the pressure at {temperature:g} K does not fall as the box grows ({p[0][0]:.3f} "
                              f"± {p[0][1]:.3f} GPa at a = {a[0]:.4f} Å, {p[1][0]:.3f} ± {p[1][1]:.3f} at "
                              f"{a[1]:.4f}): no stable crystal to measure",
                              mean_bcc_fraction(lmp, params, temperature))
    a.append(a[1] - p[1][0] / slope)
    p.append(mean_pressure(a[2]))
    x, y, error = np.array(a), np.array([m for m, _ in p]), np.array([e for _, e in p])
    slope, slope_error = slope_with_errors(x, y, error)
    root = float(x.mean() - y.mean() / slope)
    root_error = float(np.sqrt(np.sum(error ** 2)) / len(x) / abs(slope))
    set_box_lengths(lmp, root * cells)
    lmp.command("unfix zero_pressure")
    return ZeroPressure(root, root_error, -root / 3 * slope, root / 3 * slope_error,
                        list(zip(a, y.tolist(), error.tolist())))


def zero_pressure_crystal(params: ZeroPressureParams, lattice_constant: float, temperature: float,
                          pair_commands: list[str]) -> tuple[Any, ZeroPressure]:
    """A new LAMMPS instance holding the bcc box thermalised by NVT at `lattice_constant` and
    then brought to its zero-pressure box at `temperature`, and that box."""
    lmp = bcc_box(params, lattice_constant, pair_commands)
    thermalise(lmp, temperature, params.seed_at(temperature))
    lmp.commands_list([nvt_command("thermalise", temperature, params.timestep_fs),
                       f"run {params.steps(params.equilibrate_ps)}", "unfix thermalise"])
    try:
        return lmp, zero_pressure_box(lmp, params, temperature, lattice_constant, params.settle_ps,
                                      params.average_ps, params.samples)
    except NoStableCrystal:
        lmp.close()
        raise


def bcc_fraction(lmp: Any, positions: str = "x") -> float:
    """The fraction of the atoms that adaptive CNA calls bcc, of LAMMPS' current positions or of
    another per-atom (x, y, z) triple such as a fix's time average (`f_<fix id>`)."""
    from tasks.fields.neighbours import STRUCTURES, adaptive_cna
    from tasks.md import gathered

    box_lo, box_hi, *_ = lmp.extract_box()
    kinds = adaptive_cna(gathered(lmp, positions, 3).astype(float), np.array(box_lo), np.array(box_hi),
                         (True, True, True))
    return float(np.mean(kinds == STRUCTURES.index("bcc")))


#: What a property's `bcc_fraction_<T>K` component is.
BCC_NOTE = "a-CNA of positions averaged over 0.3 ps, the mean of 5 such windows of NVT after the run"


def mean_bcc_fraction(lmp: Any, params: FiniteTemperatureParams, temperature: float, window_ps: float = 0.3,
                      windows: int = 5) -> float:
    """The a-CNA bcc fraction of the positions averaged over each of `windows` windows of
    `window_ps` of NVT at the current box, and their mean. Single frames of a thermal crystal
    scatter (54 SNAP atoms at 300 K gave 0.50 and 0.96 in two runs; the retrained Li members'
    0.67 ± 0.09 at 300 K, where their slab's averaged interior is 0.999: README, "a-CNA of a
    hot crystal")."""
    lmp.command(nvt_command("bcc_fraction", temperature, params.timestep_fs))
    _, fractions, _ = averaged_bcc_fractions(lmp, params, windows, window_ps)
    lmp.command("unfix bcc_fraction")
    return float(np.mean(fractions))


def averaged_bcc_fractions(lmp: Any, params: FiniteTemperatureParams, windows: int, window_ps: float = 0.3
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The a-CNA bcc fraction of the positions averaged over each of `windows` consecutive
    windows of `window_ps`, run under the fixes that integrate the atoms now; each window's
    mean temperature (K: what an NPH box settles to is the measurement there); and each
    window's middle in ps from now."""
    from tasks.md import time_average_commands, undo_time_average

    steps = params.steps(window_ps)
    # fix ave/atom gives its averages on multiples of `steps` counted from step 0: start at one
    pad = -int(lmp.get_thermo("step")) % steps
    if pad:
        lmp.command(f"run {pad}")
    lmp.commands_list([*time_average_commands("bcc_mean", steps, steps),
                       f"fix window_temperature all ave/time 1 {steps} {steps} c_thermo_temp"])
    at, samples = run_sampled(lmp, steps * windows, windows,
                              lambda: (bcc_fraction(lmp, "f_bcc_mean"), lmp.extract_fix("window_temperature", 0, 0)))
    lmp.commands_list([*undo_time_average("bcc_mean"), "unfix window_temperature"])
    fractions, temperatures = (np.array(column, dtype=float) for column in zip(*samples))
    return (pad + at - steps / 2) * params.timestep_fs / 1000, fractions, temperatures


def block_error(series: np.ndarray, blocks: int = 5) -> float:
    """Standard error of a time series' mean from the spread of its block means: MD samples are
    correlated, each block's mean much less so. The series is cut into `blocks` equal pieces
    (its tail dropped to fit) along its first axis."""
    series = np.asarray(series, dtype=float)
    length = len(series) // blocks
    if length == 0:
        raise ValueError(f"{len(series)} samples cannot make {blocks} blocks")
    means = series[: length * blocks].reshape(blocks, length, *series.shape[1:]).mean(axis=1)
    return means.std(axis=0, ddof=1) / np.sqrt(blocks)


def slope_with_errors(x: np.ndarray, y: np.ndarray, y_error: np.ndarray) -> tuple[float, float]:
    """The least-squares slope through (x, y) and its standard error propagated from each y's
    own (independent) error: the points' scatter is too few degrees of freedom to say it."""
    x, y, y_error = (np.asarray(v, dtype=float) for v in (x, y, y_error))
    weights = (x - x.mean()) / np.sum((x - x.mean()) ** 2)
    return float(weights @ y), float(np.sqrt(np.sum((weights * y_error) ** 2)))
