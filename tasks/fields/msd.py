"""Mean squared displacement of atom groups chosen on the first frame, and diffusion coefficients."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, Field

from tasks.fields.base import Coordinate, FrameCache, FrameField, FieldParams, Variable
from tasks.frame import Frame

GROUPS = ("surface", "bulk")


#: Rows (atom coordinates) transformed at once: bounds the FFT's memory for long runs.
FFT_BLOCK_ROWS = 4096


def group_msd(rows: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Windowed MSD of atom groups over all time origins, O(T log T), exact.

    `rows` (3N, T): each atom coordinate's displacement from the first frame; `groups` (G, N)
    boolean membership. The algorithm of Calandrini et al. (MDAnalysis' EinsteinMSD with
    FFT), with the autocorrelations of a group's atoms summed in frequency space, so one
    inverse FFT serves the whole group (its MSD is their mean). Displacements (not
    positions) keep the numbers small: no cancellation at large coordinates.
    """
    import scipy.fft

    n_rows, n_times = rows.shape
    groups = np.atleast_2d(groups)
    if n_times == 0:
        return np.full((len(groups), 0), np.nan)
    weights = np.repeat(groups, 3, axis=1).astype(float)  # (G, 3N)
    size = scipy.fft.next_fast_len(2 * n_times, real=True)
    power = np.zeros((len(groups), size // 2 + 1))
    squared = np.zeros((len(groups), n_times))
    for start in range(0, n_rows, FFT_BLOCK_ROWS):
        block = rows[start:start + FFT_BLOCK_ROWS]
        spectrum = scipy.fft.rfft(block, n=size, axis=-1)
        power += weights[:, start:start + FFT_BLOCK_ROWS] @ (spectrum.real ** 2 + spectrum.imag ** 2)
        squared += weights[:, start:start + FFT_BLOCK_ROWS] @ block ** 2
    autocorrelation = scipy.fft.irfft(power, n=size, axis=-1)[:, :n_times]
    total = squared.sum(axis=1, keepdims=True)
    head = np.cumsum(squared, axis=1) - squared  # Σ_{t < m}
    tail = np.cumsum(squared[:, ::-1], axis=1) - squared[:, ::-1]  # Σ_{t > T-1-m}
    counts = n_times - np.arange(n_times)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (2 * total - head - tail - 2 * autocorrelation) / counts / groups.sum(axis=1, keepdims=True)


def msd_fft(positions: np.ndarray) -> np.ndarray:
    """Windowed MSD of all atoms: positions (T, N, 3) -> msd (T,) Å²."""
    n_times = positions.shape[0]
    rows = (positions - positions[:1]).reshape(n_times, -1).T
    return group_msd(rows, np.ones((1, positions.shape[1]), dtype=bool))[0]


def diffusion_fit(lag_ps: np.ndarray, msd: np.ndarray, window: tuple[float, float]) -> tuple[float, float]:
    """D (Å²/ps) and its standard error from a linear fit MSD = 6 D t over a window of the lags.

    The standard error is that of the least-squares slope; the MSD at neighbouring lags
    is correlated, so it is a lower bound: a D smaller than twice it is not resolved.
    """
    usable = np.isfinite(msd)
    lag_ps, msd = lag_ps[usable], msd[usable]
    lo = int(window[0] * len(lag_ps))
    hi = max(int(window[1] * len(lag_ps)), lo + 3)
    x, y = lag_ps[lo:hi], msd[lo:hi]
    if len(x) < 3:
        return np.nan, np.nan
    coefficients, covariance = np.polyfit(x, y, 1, cov=True)
    return float(coefficients[0] / 6.0), float(np.sqrt(covariance[0, 0]) / 6.0)


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if not 0 <= value[0] < value[1] <= 1:
        raise ValueError(f"fit_window must satisfy 0 <= start < end <= 1, got {list(value)}")
    return value


#: The lags `diffusion_fit` fits, as fractions of the lag range.
FitWindow = Annotated[tuple[float, float], Field(description="fractions of the lag range fitted for D"),
                      AfterValidator(_ordered)]


class MsdParams(FieldParams):
    surface_depth_angstrom: float = Field(5.0, gt=0, description="Å below the highest mobile atom of the first "
                                                                 "frame that count as surface")
    fit_window: FitWindow = (0.2, 0.8)


class MeanSquaredDisplacement(FrameField):
    """``surface`` = mobile atoms within `surface_depth_angstrom` of the highest mobile atom of
    the first frame, ``bulk`` = the other mobile atoms. Atoms deposited later are not tracked."""

    name = "msd"
    Params = MsdParams

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._tracked = np.empty(0, dtype=np.int64)
        self._groups = np.zeros((len(GROUPS), 0), dtype=bool)
        self._first = np.empty((0, 3))
        self._rows = np.empty((0, 0))  # (3N, T): displacements from the first frame, in the FFT's layout
        self._frames = 0

    def coordinates(self) -> dict[str, Coordinate]:
        times = np.asarray(self.shape.times_ps, dtype=float)
        lag = times - times[0] if len(times) else times
        return {"group": Coordinate(np.array(GROUPS, dtype=object), {"long_name": "atoms tracked"}),
                "lag": Coordinate(lag, {"units": "ps", "long_name": "time lag"})}

    def variables(self) -> dict[str, Variable]:
        window = list(self.params.fit_window)
        return {"msd": Variable(("group", "lag"), {"units": "angstrom^2", "long_name": "mean squared displacement",
                                                  "cell_methods": "time: mean (all time origins)"}, "float64"),
                "diffusion_coefficient": Variable(("group",), {"units": "angstrom^2/ps", "long_name":
                                                  "D from MSD = 6 D t", "fit_window_fraction_of_lags": window,
                                                  "to_cm2_per_s": 1e-4}, "float64"),
                "diffusion_coefficient_stderr": Variable(("group",), {"units": "angstrom^2/ps", "long_name":
                                                         "standard error of the fitted D (a lower bound)"}, "float64")}

    def prepare(self, frame: Frame) -> None:
        mobile = ~frame.fixed
        self._tracked = frame.ids[mobile]
        z = frame.positions[mobile, 2]
        surface = z > z.max() - self.params.surface_depth_angstrom if len(z) else np.zeros(0, dtype=bool)
        self._groups = np.array([surface, ~surface])
        self._first = frame.positions[mobile].copy()
        self._rows = np.empty((3 * len(self._tracked), self.shape.n_frames))

    def one_frame(self, frame: Frame, cache: FrameCache) -> dict[str, Any]:
        same = len(frame.ids) == len(self._tracked) and np.array_equal(frame.ids, self._tracked)
        positions = frame.positions if same else frame.positions[np.searchsorted(frame.ids, self._tracked)]
        self._rows[:, self._frames] = (positions - self._first).ravel()
        self._frames += 1
        return {}

    def conclude(self) -> dict[str, Any]:
        n = self._frames
        lag = self.coordinates()["lag"].values[:n]
        curves = np.full((len(GROUPS), self.shape.n_frames), np.nan)
        fits = np.full((len(GROUPS), 2), np.nan)
        filled = self._groups.any(axis=1)
        if filled.any():
            curves[filled, :n] = group_msd(self._rows[:, :n], self._groups[filled])
        for g in np.flatnonzero(filled):
            fits[g] = diffusion_fit(lag, curves[g, :n], self.params.fit_window)
        return {"msd": curves, "diffusion_coefficient": fits[:, 0], "diffusion_coefficient_stderr": fits[:, 1]}
