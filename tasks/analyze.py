"""A production run: one MD protocol with its fields streamed, and fields of stored frames.

`run_shape` says, before anything runs, what a run will hand its fields (the frames and
their times, the box, the atoms); the fields declare their variables from it, so a study
can be laid out for its whole sweep at once. `md_with_fields` runs the protocol with the
fields as callbacks and writes what they computed; `analyze_frames` computes the same
fields over frames read back from disk.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import xarray as xr
from ase import Atoms

from tasks.fields import FieldStream, RunShape, make_fields
from tasks.frame import Frame
from tasks.geometry import lammps_box_lengths, vacuum_axes
from tasks.md import Potential, run_md
from tasks.protocols import PROTOCOLS, MdParams

FieldSpec = tuple[str, Mapping[str, Any]]


def periodic_along_z(atoms: Atoms, protocol: str) -> bool:
    """Whether neighbours are found across the box's top and bottom: not for slabs or deposition."""
    return not vacuum_axes(atoms)[2] and protocol != "deposition"


def run_shape(atoms: Atoms, protocol: str, params: Mapping[str, Any] | MdParams,
              type_map: Sequence[str] = ("Li",)) -> RunShape:
    """What `run_md` will hand the fields of this run: one frame every `trajectory_stride` steps."""
    plugin = PROTOCOLS[protocol]
    typed = plugin.parse(params)
    n_frames = plugin.n_frames(typed, atoms)
    lengths = lammps_box_lengths(atoms)
    box_height = plugin.box_height(typed, atoms)
    if box_height is not None:
        lengths[2] = max(lengths[2], box_height)
    steps = np.arange(1, n_frames + 1) * typed.trajectory_stride
    return RunShape(steps * typed.timestep, np.zeros(3), lengths, len(atoms), periodic_along_z(atoms, protocol),
                    tuple(type_map))


def field_specs(fields: Sequence[str | FieldSpec]) -> list[FieldSpec]:
    return [(f, {}) if isinstance(f, str) else (f[0], dict(f[1])) for f in fields]


def md_with_fields(structure: str | Path, potential: Potential, protocol: str, params: Mapping[str, Any],
                   output_dir: str | Path, fields: Sequence[str | FieldSpec], type_map: Sequence[str] = ("Li",),
                   masses_amu: dict[str, float] | None = None, save_trajectory: bool = False) -> dict[str, Any]:
    """Run one MD protocol with its fields streamed; writes `fields.zarr` beside the run's outputs.

    `fields` are names, or (name, parameters) pairs of `tasks.fields`. The fields of a run
    that failed part-way are kept (up to its last good frame) and marked `run_status =
    failed` in their attrs. `result.json` is rewritten last with a `fields` entry (None
    when the run produced no frame at all).
    """
    from ase.io import read

    output_dir = Path(output_dir)
    atoms = read(str(structure))
    shape = run_shape(atoms, protocol, params, type_map)
    stream = FieldStream(make_fields(field_specs(fields), shape), shape)
    target = output_dir / "fields.zarr"
    if target.exists():
        shutil.rmtree(target)  # from an attempt that died before result.json
    result = run_md(atoms, potential, protocol, params, output_dir, type_map, masses_amu, [stream], save_trajectory)
    if result.n_frames:
        dataset = stream.dataset()
        dataset.attrs.update({"protocol": protocol, "run_status": result.status, "reason": result.reason,
                              "stop_reason": result.stop_reason, "n_valid_time": stream.n_frames,
                              "n_atoms_start": result.n_atoms_start, "n_atoms_end": result.n_atoms_end})
        temporary = output_dir / "fields.tmp.zarr"
        if temporary.exists():
            shutil.rmtree(temporary)
        dataset.to_zarr(temporary, mode="w", zarr_format=3, consolidated=False)
        temporary.rename(target)
    # result.json again, now with `fields`: a result.json without that key is a run whose fields
    # were never written (the worker died in between), and is redone.
    finished = {**asdict(result), "fields": str(target) if result.n_frames else None}
    (output_dir / "result.json.tmp").write_text(json.dumps(finished, indent=1))
    (output_dir / "result.json.tmp").replace(output_dir / "result.json")
    return finished


def shape_of_frames(frames: Sequence[Frame], periodic_z: bool, type_map: Sequence[str] = ("Li",)) -> RunShape:
    """The shape of stored frames (their own times and the first frame's box)."""
    first = frames[0]
    return RunShape(np.array([f.time_ps for f in frames]), np.asarray(first.box_lo, float),
                    np.asarray(first.box_hi, float), len(first.ids), periodic_z, tuple(type_map))


def analyze_frames(frames: Sequence[Frame], fields: Sequence[str | FieldSpec], periodic_z: bool,
                   type_map: Sequence[str] = ("Li",)) -> xr.Dataset:
    """The fields of frames read back from disk (a saved trajectory, a dump)."""
    shape = shape_of_frames(frames, periodic_z, type_map)
    stream = FieldStream(make_fields(field_specs(fields), shape), shape)
    for frame in frames:
        stream(frame)
    return stream.dataset()
