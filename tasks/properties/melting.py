"""The melting point of bcc Li by solid-liquid coexistence: from the interface's direction at
fixed temperatures (`method: interface_velocity`), or from the temperature a two-phase box
settles to without a thermostat (`method: nph`, study 000's way).

At each temperature T of the list, one LAMMPS run: the bcc box is equilibrated at T and zero
pressure (NPT), its upper half melted at `melt_temperature_k` while the lower half is held
in place, the melt brought to T, then the whole two-phase box runs NPT at T with the
barostat along z only (x and y stay the crystal's own at T; z, normal to the (001)
interface, takes the volume change). Below the melting point the crystal grows, above it
melts: the rate of change of the bcc fraction (adaptive common-neighbour analysis, the
`structure_fractions` field's own), from the release until the box is all crystal or all
melt, changes sign at the melting point. The value is where
the rate, interpolated linearly between the temperatures that bracket the change, is zero;
its uncertainty is half their spacing (the resolution of the temperature grid), or half the
range over which the sign changes more than once (noise at small sizes and short runs). Where
the sign never changes the value is NaN and its note the bound ("above 510 K: ..."), the runs
kept as curves.
With `method: nph` the two-phase box runs with the barostat along z and no thermostat: where
the crystal grows, its latent heat warms the box, where it melts the box cools, until the
temperature is the melting point and the interface stops. The value is the mean temperature
of the second half of the coexistence, from the runs whose box is still two-phase at the end
(bcc fraction between 0.1 and 0.9 over the last 1 ps); its uncertainty the block-average error, or the spread of
several runs' values where larger. One run suffices if it starts within about 50 K of the
melting point (256 atoms: freezing or melting half the box moves its temperature by about 60
K); a run that froze or melted entirely bounds it, as the fixed-temperature runs do.
(The potential energy's slope is buried in the barostat's noise at these sizes; the bcc
fraction is not.) The a-CNA is of positions averaged over 0.3 ps windows: single frames of hot
Li scatter (DeePMD members' bulk at 390 K read 0.30 bcc by single frames; README, "a-CNA of a
hot crystal").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from tasks.properties.base import CalculatorFactory, Property, PropertyResult, PropertyValue, linear_fit
from tasks.properties.thermal import (MIN_CRYSTAL_BCC, FiniteTemperatureParams, averaged_bcc_fractions, bcc_box,
                                      block_error, mean_bcc_fraction, nph_command, npt_command, nvt_command,
                                      thermalise)

#: A bcc fraction (of 0.3 ps averages) below this is no crystal left (a melt reads up to 0.1),
#: above this the box is all crystal (a crystal reads 0.97-1.00; near Tm 0.88-0.96, against which
#: an NPH run's fractions are taken).
GONE, FULL = 0.1, 0.9
#: Both phases thick: each at least this share of the box (7-9 Å along z in 256-500 atoms).
THICK = 0.25
#: ps over which positions are averaged before a-CNA.
WINDOW_PS = 0.3
#: An NPH run's end state: the mean bcc fraction of its last windows (about 1 ps).
ENDING_WINDOWS = 3


class MeltingParams(FiniteTemperatureParams):
    method: Literal["interface_velocity", "nph"] = Field(
        "interface_velocity", description="interface_velocity: the crystal's growth rate at each fixed temperature, "
                                          "zero at the melting point; nph: the temperature a two-phase box without "
                                          "thermostat settles to")
    temperatures_k: list[float] = Field([400.0, 440.0, 480.0, 520.0], min_length=1,
                                        description="K, ascending; interface_velocity: the melting point must lie "
                                                    "between the ends; nph: each run's start, near the melting point")
    cells: tuple[int, int, int] = Field((6, 6, 12), description="conventional cells along x, y, z (the interface "
                                                                "normal); 864 atoms by default")
    melt_ps: float = Field(5.0, gt=0, description="ps of melting the upper half")
    melt_temperature_k: float = Field(1200.0, gt=0, description="K, the upper half's melting temperature")
    cool_ps: float = Field(2.0, gt=0, description="ps of bringing the melt to T, the crystal still held")
    coexistence_ps: float = Field(20.0, gt=0, description="ps of two-phase NPT, over which the bcc fraction's "
                                                        "rate is measured until the box is all crystal or all melt "
                                                        "(nph: of NPH, its second half averaged)")

    @field_validator("cells")
    @classmethod
    def _tall(cls, cells: tuple[int, int, int]) -> tuple[int, int, int]:
        if cells[2] < 2 * min(cells[:2]):
            raise ValueError("z at least twice x and y (two halves, each about cubic)")
        return cells

    @model_validator(mode="after")
    def _bracket(self) -> "MeltingParams":
        if self.method == "interface_velocity" and len(self.temperatures_k) < 2:
            raise ValueError("interface_velocity needs at least two temperatures, to bracket the melting point")
        return self

    @property
    def how(self) -> str:
        """The box and the run behind a value, for its note."""
        run = "NPT (z) per temperature" if self.method == "interface_velocity" else "NPH (z) per run"
        return f"coexistence of {self.atoms} atoms, (001) interface, {self.coexistence_ps:g} ps {run}"


class MeltingPoint(Property):
    name = "melting_point"
    Params = MeltingParams
    runs_md = True

    def compute(self, params: MeltingParams, calculators: CalculatorFactory, pair_commands: list[str] | None = None
                ) -> PropertyResult:
        if pair_commands is None:
            raise ValueError("the melting point runs MD in LAMMPS: it needs a classical or DeePMD potential")
        a0 = params.lattice_constant(calculators)
        runs = [coexistence_run(params, a0, params.temperatures_k[0], pair_commands)]
        require_crystal(params, runs[0])
        runs += [coexistence_run(params, a0, temperature, pair_commands) for temperature in params.temperatures_k[1:]]
        return melting_point_result(params, runs)


@dataclass(frozen=True)
class CoexistenceRun:
    """One temperature of the melting point: the bcc fraction of the crystal equilibrated
    there, and of the two-phase box against time (ps) from the release of the crystal half,
    with the box's mean temperature (K) at those times (absent from runs recorded before it was)."""

    temperature_k: float
    crystal_bcc: float
    times_ps: np.ndarray
    bcc_fractions: np.ndarray
    temperatures_k: np.ndarray | None = None

    @property
    def growth_rate(self) -> float:
        return growth_rate(self.times_ps, self.bcc_fractions)


def require_crystal(params: MeltingParams, run: CoexistenceRun) -> None:
    """Refuses a first run whose crystal was not bcc after its NPT, before the other
    temperatures spend their time. Under `method: nph` a crystal that melted alone (a-CNA at
    most GONE) is not refused: it bounds the melting point below its temperature
    (`settled_temperature_result`); only a disordered one is."""
    disordered = run.crystal_bcc < MIN_CRYSTAL_BCC
    if params.method == "nph":
        disordered = disordered and run.crystal_bcc > GONE
    if disordered:
        raise ValueError(f"the crystal is not bcc after {params.equilibrate_ps:g} ps of NPT at {run.temperature_k:g} K "
                         f"(a-CNA bcc fraction {run.crystal_bcc:.2f} of {WINDOW_PS:g} ps averages): the potential "
                         f"does not hold bcc Li there, so there is no bcc melting point to find")


def melting_point_result(params: MeltingParams, runs: list[CoexistenceRun]) -> PropertyResult:
    """The melting point from the runs at `params.temperatures_k`, in that order: where the
    crystal's growth rate changes sign."""
    if [run.temperature_k for run in runs] != params.temperatures_k:
        raise ValueError(f"runs at {[run.temperature_k for run in runs]} K, not at {params.temperatures_k} K")
    require_crystal(params, runs[0])
    if params.method == "nph":
        return settled_temperature_result(params, runs)
    temperatures = np.array(params.temperatures_k)
    slopes_array = np.array([run.growth_rate for run in runs])
    how = params.how
    if np.all(slopes_array >= 0) or np.all(slopes_array <= 0):
        # a bound is a finding, and the runs behind it are kept: hours of MD on a CPU
        melts = slopes_array[0] < 0
        bound = f"below {temperatures[0]:g} K" if melts else f"above {temperatures[-1]:g} K"
        melting, uncertainty = float("nan"), None
        how = (f"{bound}: the crystal {'melts' if melts else 'grows'} at every temperature of "
               f"{temperatures[0]:g}-{temperatures[-1]:g} K (bcc fraction rates {np.round(slopes_array, 4).tolist()} "
               f"per ps), so `temperatures_k` must reach further; {how}")
    else:
        melting, uncertainty = zero_crossing(temperatures, slopes_array)
    traces = {f"bcc_fraction_vs_time_{run.temperature_k:g}K": [run.times_ps.tolist(), run.bcc_fractions.tolist()]
              for run in runs}
    return PropertyResult(MeltingPoint.name, [PropertyValue("melting_point", melting, "K", uncertainty, note=how)],
                          curves={"bcc_fraction_rate_vs_temperature": [temperatures.tolist(), slopes_array.tolist()],
                                  **traces})


def coexistence_run(params: MeltingParams, lattice_constant: float, temperature: float, pair_commands: list[str]
                    ) -> CoexistenceRun:
    """One temperature's LAMMPS run: the bcc fraction of the crystal equilibrated at
    `temperature`, and against time (ps) of the two-phase run there: at the moment the crystal
    half is released (its share of the crystal's), then of each averaging window (at its
    middle). The temperatures are independent of each other, so a machine with room for several
    runs may run them side by side and hand them all to `melting_point_result`."""
    lmp = bcc_box(params, lattice_constant, pair_commands)
    seed = params.seed_at(temperature)
    thermalise(lmp, temperature, seed)
    lmp.commands_list([npt_command("crystal", temperature, params.timestep_fs),
                       f"run {params.steps(params.equilibrate_ps)}", "unfix crystal"])
    crystal = mean_bcc_fraction(lmp, params, temperature, WINDOW_PS)
    lmp.commands_list([
        "variable middle equal zlo+0.5*lz", "region upper block INF INF INF INF ${middle} INF units box",
        "group liquid region upper", "group solid subtract all liquid",
        "fix hold solid setforce 0.0 0.0 0.0", "velocity solid set 0.0 0.0 0.0"])
    thermalise(lmp, params.melt_temperature_k, seed + 1, "liquid")
    lmp.commands_list([
        nvt_command("melt", params.melt_temperature_k, params.timestep_fs, "liquid"),
        f"run {params.steps(params.melt_ps)}", "unfix melt",
        nvt_command("cool", temperature, params.timestep_fs, "liquid"), f"run {params.steps(params.cool_ps)}",
        "unfix cool", "unfix hold"])
    thermalise(lmp, temperature, seed + 2, "solid")
    lmp.command("variable solid_atoms equal count(solid)")
    released = crystal * lmp.extract_variable("solid_atoms") / lmp.get_natoms()  # the crystal half, as it was
    if params.method == "nph":  # no thermostat: the latent heat moves the temperature to the melting point
        lmp.command(nph_command("coexist", params.timestep_fs, "z"))
    else:
        lmp.command(npt_command("coexist", temperature, params.timestep_fs, "z"))
    times, fractions, temperatures = averaged_bcc_fractions(lmp, params, round(params.coexistence_ps / WINDOW_PS),
                                                            WINDOW_PS)
    lmp.close()
    return CoexistenceRun(temperature, crystal, np.concatenate([[0.0], times]),
                          np.concatenate([[released], fractions]), np.concatenate([[temperature], temperatures]))


def settled_temperature_result(params: MeltingParams, runs: list[CoexistenceRun]) -> PropertyResult:
    """`method: nph`: the mean temperature of the second half of each run still two-phase at its
    end (the crystal's share of the box taken against the crystal's own bcc fraction); runs that
    froze or melted entirely bound the melting point instead, as does a crystal that melted
    alone at its start temperature; one that was only disordered there does neither."""
    settled, errors, fates = [], [], []
    for run in runs:
        if run.temperatures_k is None:
            raise ValueError(f"the run from {run.temperature_k:g} K has no temperatures recorded: not an NPH run")
        if run.crystal_bcc <= GONE:
            # a crystal without an interface melts only above the melting point (superheated)
            fates.append(f"from {run.temperature_k:g} K its crystal melted alone (a-CNA {run.crystal_bcc:.2f}), so "
                         f"the melting point lies below that")
            continue
        if run.crystal_bcc < MIN_CRYSTAL_BCC:
            # a disordered crystal melts below the melting point: neither a value nor a bound
            fates.append(f"from {run.temperature_k:g} K its crystal was not bcc (a-CNA {run.crystal_bcc:.2f}), "
                         f"so that run says nothing")
            continue
        temperatures = run.temperatures_k[len(run.times_ps) // 2:]
        # the crystal's share of the box, as the crystal alone reads (0.88-0.96 near Tm, not 1)
        shares = run.bcc_fractions / run.crystal_bcc
        end = float(np.mean(shares[-ENDING_WINDOWS:]))  # one window of 256 atoms scatters by 0.1-0.2
        if GONE < end < FULL:
            settled.append(float(np.mean(temperatures)))
            errors.append(float(block_error(temperatures, min(5, len(temperatures)))))
            fates.append(f"from {run.temperature_k:g} K: {settled[-1]:.0f} ± {errors[-1]:.0f} K")
        else:
            froze = end >= FULL
            # the bound is the box's temperature while both phases were thick: the last layers of a
            # crystal melt below the melting point, of a liquid freeze above it (their interfaces
            # meet), so when the last one went says nothing
            thick = (shares >= THICK) & (shares <= 1 - THICK)
            bound = float(np.mean(run.temperatures_k[thick])) if thick.any() else run.temperature_k
            fates.append(f"from {run.temperature_k:g} K the box {'froze' if froze else 'melted'} entirely, at "
                         f"{bound:.0f} K on average while both phases were thick, so the melting point lies "
                         f"{'above' if froze else 'below'} about that")
    how = f"{params.how}; " + "; ".join(fates)
    if settled:
        value = float(np.mean(settled))
        spread = float(np.std(settled, ddof=1) / np.sqrt(len(settled))) if len(settled) > 1 else 0.0
        uncertainty = max(float(np.sqrt(np.sum(np.square(errors)))) / len(settled), spread)
        how = f"the mean temperature of the last {params.coexistence_ps / 2:g} ps of two-phase NPH, {how}"
    else:
        value, uncertainty = float("nan"), None
        how = f"no run stayed two-phase: start nearer the melting point; {how}"
    curves = {}
    for run in runs:
        curves[f"bcc_fraction_vs_time_{run.temperature_k:g}K"] = [run.times_ps.tolist(), run.bcc_fractions.tolist()]
        curves[f"temperature_vs_time_{run.temperature_k:g}K"] = [run.times_ps.tolist(), run.temperatures_k.tolist()]
    return PropertyResult(MeltingPoint.name, [PropertyValue("melting_point", value, "K", uncertainty, note=how)],
                          curves=curves)


def zero_crossing(temperatures: np.ndarray, rates: np.ndarray) -> tuple[float, float]:
    """Where the crystal's growth rate goes from positive (grows) to negative (melts), and the
    uncertainty of that temperature."""
    crossings = [i for i in range(len(rates) - 1) if rates[i] > 0 >= rates[i + 1]]
    if not crossings:
        raise ValueError(f"the crystal melts below and grows above (bcc fraction rates {np.round(rates, 4).tolist()} "
                         f"per ps at {temperatures.tolist()} K): no melting point in these runs")
    points = [temperatures[i] + (temperatures[i + 1] - temperatures[i]) * rates[i] / (rates[i] - rates[i + 1])
              for i in crossings]
    first, last = crossings[0], crossings[-1]
    return float(np.mean(points)), float(temperatures[last + 1] - temperatures[first]) / 2


def growth_rate(times: np.ndarray, fractions: np.ndarray) -> float:
    """The bcc fraction's rate of change (per ps) from the release of the crystal half (the
    first point) until the box is all crystal or all melt. A small box is decided within
    picoseconds (256 DeePMD atoms 40 K off the melting point: 0.4-2.5 ps), after which the fraction
    stays at one or zero and its slope says nothing."""
    decided = np.flatnonzero((fractions[1:] < GONE) | (fractions[1:] > FULL))
    end = decided[0] + 2 if decided.size else len(fractions)
    return linear_fit(times[:end], fractions[:end])[0]
