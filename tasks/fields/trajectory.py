"""The raw trajectory as a field: every `every_frames`-th frame's atoms, in the campaign store.

With it a study keeps what its runs saw, so that a field added later is computed from the
store (`campaign analyze`) without running MD again. Stored per frame: LAMMPS ids, types,
fixed flags, unwrapped positions (float64: fields recomputed from them equal the streamed
ones), velocities and per-atom potential energy (float32, 7 digits), and the box. Atom
slots beyond the atoms a frame has (a deposition grows) hold id -1 and NaN. The frames
are kept in the worker's memory until the run writes them: choose `every_frames` so that
a run's trajectory fits.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import xarray as xr
from pydantic import Field

from tasks.fields.base import Coordinate, FieldParams, FrameCache, FrameField, Variable
from tasks.frame import Frame


class TrajectoryParams(FieldParams):
    every_frames: int = Field(1, ge=1, description="keep every this many of the run's frames")


class Trajectory(FrameField):
    name = "trajectory"
    Params = TrajectoryParams

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._seen = 0

    @property
    def kept(self) -> np.ndarray:
        """Indices (into the run's frames) of the frames kept."""
        every = self.params.every_frames
        return np.arange(every - 1, self.shape.n_frames, every)

    def coordinates(self) -> dict[str, Coordinate]:
        times = np.asarray(self.shape.times_ps, dtype=float)[self.kept]
        return {"trajectory_time": Coordinate(times, {"units": "ps", "long_name": "time of a kept frame"}),
                "atom": Coordinate(np.arange(self.shape.atom_slots), {"long_name": "atom slot (by LAMMPS id order)"}),
                "xyz": Coordinate(np.array(["x", "y", "z"], dtype=object), {"long_name": "Cartesian axis"}),
                "bound": Coordinate(np.array(["lo", "hi"], dtype=object), {"long_name": "box bound"})}

    def variables(self) -> dict[str, Variable]:
        per_atom = ("trajectory_time", "atom")
        return {
            "trajectory_ids": Variable(per_atom, {"long_name": "LAMMPS atom id (-1: empty slot)"}, "int32"),
            "trajectory_types": Variable(per_atom, {"long_name": "index into the campaign's type_map"}, "int8"),
            "trajectory_fixed": Variable(per_atom, {"long_name": "1 for atoms held fixed"}, "int8"),
            "trajectory_positions": Variable((*per_atom, "xyz"), {"units": "angstrom", "long_name":
                                             "unwrapped position"}, "float64"),
            "trajectory_velocities": Variable((*per_atom, "xyz"), {"units": "angstrom/ps", "long_name":
                                              "velocity"}),
            "trajectory_potential_energy": Variable(per_atom, {"units": "eV", "long_name": "per-atom potential "
                                                    "energy"}),
            "trajectory_box": Variable(("trajectory_time", "bound", "xyz"), {"units": "angstrom", "long_name":
                                       "box bounds"}, "float64")}

    def prepare(self, frame: Frame) -> None:
        slots, kept = self.shape.atom_slots, len(self.kept)
        self._arrays = {"trajectory_ids": np.full((kept, slots), -1, np.int32),
                        "trajectory_types": np.zeros((kept, slots), np.int8),
                        "trajectory_fixed": np.zeros((kept, slots), np.int8),
                        "trajectory_positions": np.full((kept, slots, 3), np.nan),
                        "trajectory_velocities": np.full((kept, slots, 3), np.nan, np.float32),
                        "trajectory_potential_energy": np.full((kept, slots), np.nan, np.float32),
                        "trajectory_box": np.full((kept, 2, 3), np.nan)}

    def one_frame(self, frame: Frame, cache: FrameCache) -> dict[str, Any]:
        index = self._seen
        self._seen += 1
        if (index + 1) % self.params.every_frames:
            return {}
        k, n = index // self.params.every_frames, len(frame.ids)
        if n > self.shape.atom_slots:
            raise ValueError(f"a frame of {n} atoms, more than the {self.shape.atom_slots} slots declared")
        arrays = self._arrays
        arrays["trajectory_ids"][k, :n] = frame.ids
        arrays["trajectory_types"][k, :n] = frame.types
        arrays["trajectory_fixed"][k, :n] = frame.fixed
        arrays["trajectory_positions"][k, :n] = frame.positions
        arrays["trajectory_velocities"][k, :n] = frame.velocities
        arrays["trajectory_potential_energy"][k, :n] = frame.potential_energy
        arrays["trajectory_box"][k] = [frame.box_lo, frame.box_hi]
        return {}

    def conclude(self) -> dict[str, Any]:
        return dict(self._arrays)


def frames_from(run: xr.Dataset, masses_by_type: Sequence[float], stride_steps: int = 1) -> list[Frame]:
    """The frames one run's stored trajectory holds (its `trajectory_*` variables, one run)."""
    ids = np.asarray(run.trajectory_ids.values)
    times = np.asarray(run.trajectory_time.values)
    frames = []
    for k in range(len(times)):
        present = ids[k] >= 0
        if not present.any():
            continue  # a frame the run never reached (it stopped early or failed)
        types = np.asarray(run.trajectory_types.values[k][present], dtype=int)
        frames.append(Frame(step=(k + 1) * stride_steps, time_ps=float(times[k]), ids=ids[k][present].astype(np.int64),
                            types=types, positions=np.asarray(run.trajectory_positions.values[k][present]),
                            velocities=np.asarray(run.trajectory_velocities.values[k][present], dtype=float),
                            potential_energy=np.asarray(run.trajectory_potential_energy.values[k][present],
                                                        dtype=float),
                            masses=np.asarray(masses_by_type, dtype=float)[types],
                            fixed=run.trajectory_fixed.values[k][present].astype(bool),
                            box_lo=np.asarray(run.trajectory_box.values[k][0]),
                            box_hi=np.asarray(run.trajectory_box.values[k][1])))
    return frames
