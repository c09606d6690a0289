"""A production run: one MD protocol with its fields streamed, and fields of stored frames.

`run_shape` says, before anything runs, what a run will hand its fields (the frames and
their times, the box, the atoms); the fields declare their variables from it, so a study
can be laid out for its whole sweep at once (`declared_dataset`). `md_with_fields` runs the
protocol with the fields as callbacks and writes what they computed into the campaign
store itself; `analyze_frames` computes the same fields over frames read back from disk.
"""

from __future__ import annotations

import socket
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import xarray as xr
from ase import Atoms

from tasks.atomic import write_json
from tasks.fields import FieldStream, RunShape, make_fields
from tasks.frame import Frame
from tasks.geometry import lammps_box_lengths, vacuum_axes
from tasks.md import Potential, run_md
from tasks.protocols import PROTOCOLS, MdParams
from tasks.runtime import code_versions

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
                    tuple(type_map), plugin.max_atoms(typed, atoms))


def field_specs(fields: Sequence[str | FieldSpec]) -> list[FieldSpec]:
    return [(f, {}) if isinstance(f, str) else (f[0], dict(f[1])) for f in fields]


def declared_dataset(atoms: Atoms, protocol: str, params: Mapping[str, Any], fields: Sequence[str | FieldSpec],
                     type_map: Sequence[str] = ("Li",)) -> xr.Dataset:
    """What the run of these parameters will write, before it runs: every variable at its full
    declared shape (NaN or ''), with its coordinates. The store allocates studies from it."""
    shape = run_shape(atoms, protocol, params, type_map)
    return FieldStream(make_fields(field_specs(fields), shape), shape).dataset()


class RunSink(Protocol):
    """Where a production run writes its fields (the campaign store's `storage.fields.RunWriter`)."""

    def partial(self, values: Mapping[str, np.ndarray], n_valid_time: int) -> None: ...

    def final(self, values: Mapping[str, np.ndarray], ok: bool, n_valid_time: int,
              provenance: Mapping[str, Any]) -> None: ...


def md_with_fields(structure: str | Path, potential: Potential, protocol: str, params: Mapping[str, Any],
                   output_dir: str | Path, fields: Sequence[str | FieldSpec], sink: RunSink,
                   type_map: Sequence[str] = ("Li",), masses_amu: dict[str, float] | None = None,
                   flush_every_frames: int = 0, provenance: Mapping[str, Any] | None = None,
                   compress: bool = False) -> dict[str, Any]:
    """Run one MD protocol with its fields streamed into `sink`, from where the run executes.

    `fields` are names, or (name, parameters) pairs of `tasks.fields`. With
    `flush_every_frames` the time series so far are written every that many frames (a
    running run reads as partial); the whole run is written at its end, its status last. The
    fields of a run that failed part-way are kept up to its last good frame. `provenance`
    (task id, model digests, config hash) is completed with the code versions, the host and
    the run's own numbers. `result.json` is written last with `stored: true`: without it the
    run is redone. With `compress` a DeePMD model runs compressed into `output_dir` (a model
    file given to a study: 4 times the steps per second of a 250-atom slab at a 6.8 Å cutoff).
    """
    from ase.io import read

    output_dir = Path(output_dir)
    if compress and potential.models:
        from tasks.train import md_model

        potential = Potential(potential.kind, [md_model(m, output_dir / f"model-{k}-compressed.pth")
                                               for k, m in enumerate(potential.models)])
    atoms = read(str(structure))
    shape = run_shape(atoms, protocol, params, type_map)
    stream = FieldStream(make_fields(field_specs(fields), shape), shape)
    (output_dir / "result.json").unlink(missing_ok=True)  # from an attempt that died before storing

    def flush(frame: Any) -> None:
        if flush_every_frames and stream.n_frames % flush_every_frames == 0:
            sink.partial(stream.series(), stream.n_frames)

    result = run_md(atoms, potential, protocol, params, output_dir, type_map, masses_amu, [stream, flush])
    md_finished_at = time.time()
    dataset = stream.dataset()
    record = {**(provenance or {}), **code_versions(), "host": socket.gethostname(), "protocol": protocol,
              "md_finished_at": md_finished_at,
              "potential": potential.kind, "md_models": [Path(m).name for m in potential.models],
              "status": result.status, "reason": result.reason,
              "stop_reason": result.stop_reason, "steps_done": result.steps_done, "wall_time_s": result.wall_time_s,
              "atom_steps_per_s": result.atom_steps_per_s, "n_atoms_start": result.n_atoms_start,
              "n_atoms_end": result.n_atoms_end}
    started = time.perf_counter()
    sink.final({name: variable.values for name, variable in dataset.data_vars.items()},
               result.status == "ok" and result.n_frames > 0, stream.n_frames, record)
    finished = {**asdict(result), "output_dir": ".", "final_structure": None, "stored": True,
                "store_write_s": time.perf_counter() - started}
    for bulky in ("inserted_ids", "inserted_time_ps"):
        finished.pop(bulky)
    write_json(output_dir / "result.json", finished)
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
