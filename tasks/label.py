"""DFT labels: energies, forces and virials for a batch of structures.

One call labels a batch with one engine and one settings block, writes the successful
labels as DeePMD npy systems (via dpdata, one system per composition, size and
virial-availability), and returns one `LabelRecord` per structure. A failed structure
(`scf_not_converged`, `crashed`) never enters the training data; its record keeps the
engine's message so the campaign can report it.

Engines:
* ``gpaw``: embedded, offline DFT (PW mode, PBE); the default for real campaigns.
* ``vasp`` / ``qe``: VASP and Quantum ESPRESSO through ASE's calculators, on clusters.
* ``reference``: a classical Li potential (SNAP of Zuo et al. 2020, or MEAM) run by
  LAMMPS. It is a fast *test oracle* for the active-learning loop and benchmarks, not DFT.

Units: energies eV, forces eV/Å, virials eV (virial = -stress × volume).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError, kptdensity2monkhorstpack
from ase.calculators.singlepoint import SinglePointCalculator

from tasks.runtime import lammps_potentials_dir, prepare_process

Engine = Literal["gpaw", "reference", "vasp", "qe"]
Status = Literal["ok", "scf_not_converged", "crashed"]

#: Gap along an axis (Å) above which it counts as vacuum: one k-point there, no virial.
VACUUM_GAP_ANGSTROM = 5.0


@dataclass
class LabelRecord:
    """Outcome of labelling one structure."""

    name: str
    status: Status
    message: str
    wall_time_s: float
    settings_hash: str
    n_atoms: int
    energy_ev: float | None = None
    max_force_ev_per_angstrom: float | None = None
    system_dir: str | None = None


@dataclass
class LabelBatch:
    records: list[LabelRecord]
    system_dirs: list[str]

    @property
    def n_ok(self) -> int:
        return sum(r.status == "ok" for r in self.records)


def settings_hash(engine: str, settings: dict[str, Any]) -> str:
    """Identifies the level of theory; labels with different hashes must not be mixed."""
    text = json.dumps({"engine": engine, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def vacuum_axes(atoms: Atoms, min_gap_angstrom: float = VACUUM_GAP_ANGSTROM) -> tuple[bool, bool, bool]:
    """Axes along which the atoms leave an empty gap wider than `min_gap` (slabs, clusters)."""
    if not atoms.pbc.all():
        return tuple(not p for p in atoms.pbc)  # type: ignore[return-value]
    scaled = np.sort(np.mod(atoms.get_scaled_positions(wrap=False), 1.0), axis=0)
    lengths = atoms.cell.lengths()
    result = []
    for axis in range(3):
        s = scaled[:, axis]
        gaps = np.diff(np.concatenate([s, [s[0] + 1.0]]))
        result.append(bool(gaps.max() * lengths[axis] > min_gap_angstrom))
    return tuple(result)  # type: ignore[return-value]


def kpoint_mesh(atoms: Atoms, density_per_angstrom: float) -> tuple[int, int, int]:
    """Monkhorst-Pack size from a k-point density (ASE convention), 1 along vacuum axes."""
    vacuum = vacuum_axes(atoms)
    periodic = atoms.copy()
    periodic.pbc = [not v for v in vacuum]
    return tuple(int(k) for k in kptdensity2monkhorstpack(periodic, density_per_angstrom, even=False))  # type: ignore


def _gpaw_calculator(atoms: Atoms, settings: dict[str, Any], log_path: Path):
    from gpaw import GPAW, PW

    smearing = {"name": settings["smearing"], "width": settings["smearing_width_ev"]}
    if settings["smearing"] == "methfessel-paxton":
        smearing["order"] = 1
    return GPAW(
        mode=PW(settings["cutoff_ev"]),
        xc=settings["xc"],
        kpts={"size": kpoint_mesh(atoms, settings["kpoint_density_per_angstrom"]), "gamma": True},
        occupations=smearing,
        convergence={"energy": settings["energy_convergence_ev"]},
        maxiter=settings["scf_max_iterations"],
        txt=str(log_path),
    )


REFERENCE_POTENTIALS = {
    "snap": ["pair_style snap", "pair_coeff * * {d}/Li_Zuo_JPCA2020.snapcoeff {d}/Li_Zuo_JPCA2020.snapparam Li"],
    "snap_quadratic": ["pair_style snap", "pair_coeff * * {d}/Li_Zuo_JPCA2020.quadratic.snapcoeff "
                                          "{d}/Li_Zuo_JPCA2020.quadratic.snapparam Li"],
    "meam": ["pair_style meam", "pair_coeff * * {d}/library.meam Li NULL Li"],
}


def reference_pair_commands(potential: str) -> list[str]:
    """LAMMPS pair_style/pair_coeff lines of a classical Li potential shipped in the wheel."""
    if potential not in REFERENCE_POTENTIALS:
        raise ValueError(f"reference potential must be one of {sorted(REFERENCE_POTENTIALS)}, got {potential!r}")
    directory = lammps_potentials_dir()
    return [line.format(d=directory) for line in REFERENCE_POTENTIALS[potential]]


def reference_calculator(settings: dict[str, Any]):
    prepare_process()
    from ase.calculators.lammpslib import LAMMPSlib

    return LAMMPSlib(lmpcmds=reference_pair_commands(settings["potential"]), atom_types={"Li": 1},
                     atom_type_masses={"Li": 6.94}, log_file=None, keep_alive=False)


def external_calculator(engine: Literal["vasp", "qe"], atoms: Atoms, settings: dict[str, Any], directory: Path):
    """ASE calculator for VASP or Quantum ESPRESSO with our settings translated to theirs.

    PBE, plane-wave cutoff, Methfessel-Paxton smearing, k-point density (1 along vacuum),
    forces and stress; `settings["extra"]` is passed through unchanged.
    """
    kpts = kpoint_mesh(atoms, settings["kpoint_density_per_angstrom"])
    directory.mkdir(parents=True, exist_ok=True)
    extra = dict(settings.get("extra") or {})
    if engine == "vasp":
        from ase.calculators.vasp import Vasp

        if settings.get("pseudopotential_dir"):
            os.environ.setdefault("VASP_PP_PATH", str(settings["pseudopotential_dir"]))
        parameters = dict(xc="PBE", encut=settings["cutoff_ev"], kpts=kpts, gamma=True, ismear=1,
                          sigma=settings["smearing_width_ev"], ediff=1e-6, prec="Accurate", lreal=False,
                          isym=0, lwave=False, lcharg=False, setups={"Li": "_sv"})
        parameters.update(extra)
        return Vasp(command=settings["command"], directory=str(directory), **parameters)
    from ase.calculators.espresso import Espresso, EspressoProfile

    rydberg = 13.605693122994
    input_data = {
        "control": {"calculation": "scf", "tprnfor": True, "tstress": True},
        "system": {"ecutwfc": settings["cutoff_ev"] / rydberg, "occupations": "smearing",
                   "smearing": "mv", "degauss": settings["smearing_width_ev"] / rydberg},
        "electrons": {"conv_thr": 1e-8},
    }
    pseudopotential = extra.pop("pseudopotential", "Li.pbe-s-kjpaw_psl.1.0.0.UPF")
    for section, values in extra.items():
        input_data.setdefault(section, {}).update(values)
    pseudo_dir = str(settings.get("pseudopotential_dir") or ".")
    profile = EspressoProfile(command=settings["command"], pseudo_dir=pseudo_dir)
    return Espresso(profile=profile, directory=str(directory), input_data=input_data,
                    pseudopotentials={"Li": pseudopotential},
                    kpts=kpts)


def parse_external_output(engine: Literal["vasp", "qe"], path: str | Path) -> Atoms:
    """Structure with energy, forces (and stress) read from a finished VASP or QE run.

    For labels computed outside the campaign (or whose driver died after the code
    finished): `vasprun.xml` for VASP, the `pw.x` standard output for QE.
    """
    from ase.io import read

    formats = {"vasp": "vasp-xml", "qe": "espresso-out"}
    if engine not in formats:
        raise ValueError(f"engine must be 'vasp' or 'qe', got {engine!r}")
    try:
        atoms = read(str(path), format=formats[engine], index=-1)
    except Exception as error:
        raise ValueError(f"{path}: not a complete {engine} output ({type(error).__name__}: {error})") from None
    if atoms.calc is None or "forces" not in atoms.calc.results:
        raise ValueError(f"{path}: the {engine} output holds no forces (did the run finish?)")
    return atoms


def _energy(atoms: Atoms) -> float:
    try:
        return float(atoms.get_potential_energy(force_consistent=True))
    except PropertyNotImplementedError:
        return float(atoms.get_potential_energy())


def label_one(atoms: Atoms, engine: Engine, settings: dict[str, Any], work_dir: Path, name: str) -> tuple[
        LabelRecord, Atoms | None]:
    """Label one structure; returns its record and, if ok, a copy holding the results."""
    started = time.perf_counter()
    digest = settings_hash(engine, settings)
    structure = atoms.copy()
    structure.set_constraint()
    if engine in ("gpaw", "vasp", "qe"):
        structure.pbc = True  # plane-wave codes: isolated regions are padded with vacuum
    try:
        if engine == "gpaw":
            work_dir.mkdir(parents=True, exist_ok=True)
            structure.calc = _gpaw_calculator(structure, settings, work_dir / f"{name}.gpaw.txt")
        elif engine == "reference":
            structure.calc = reference_calculator(settings)
        else:
            structure.calc = external_calculator(engine, structure, settings, work_dir / name)
        energy = _energy(structure)
        forces = structure.get_forces()
        stress = None if any(vacuum_axes(structure)) or not atoms.pbc.all() else structure.get_stress(voigt=False)
    except Exception as error:  # the engine's own failure is data, not a crash of the campaign
        status: Status = "scf_not_converged" if _is_scf_failure(error) else "crashed"
        detail = str(error).strip() or ("SCF did not converge within scf_max_iterations"
                                        if status == "scf_not_converged" else "no message")
        message = f"{type(error).__name__}: {detail}"[:2000]
        return LabelRecord(name, status, message, time.perf_counter() - started, digest, len(atoms)), None
    if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
        return LabelRecord(name, "crashed", "non-finite energy or forces", time.perf_counter() - started,
                           digest, len(atoms)), None
    result = atoms.copy()
    result.set_constraint()
    result.calc = SinglePointCalculator(result, energy=energy, forces=forces,
                                        stress=None if stress is None else stress.copy())
    max_force = float(np.linalg.norm(forces, axis=1).max())
    record = LabelRecord(name, "ok", "", time.perf_counter() - started, digest, len(atoms), energy, max_force)
    return record, result


def _is_scf_failure(error: Exception) -> bool:
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"KohnShamConvergenceError", "ConvergenceError", "SCFError"}) or \
        "convergence not achieved" in str(error).lower()


def write_deepmd_systems(labelled: Sequence[tuple[str, Atoms]], output_dir: Path,
                         type_map: Sequence[str]) -> dict[str, str]:
    """Write labelled structures as DeePMD npy systems; returns structure name -> system dir.

    Frames are grouped by (composition, atom count, virial present, periodic) because a
    DeePMD system needs identical atoms and data keys in every frame.
    """
    import dpdata

    groups: dict[tuple, list[tuple[str, Atoms]]] = {}
    for name, atoms in labelled:
        has_virial = atoms.calc.results.get("stress") is not None
        key = (atoms.get_chemical_formula(mode="hill"), len(atoms), has_virial, bool(atoms.pbc.all()))
        groups.setdefault(key, []).append((name, atoms))
    where: dict[str, str] = {}
    for (formula, n_atoms, has_virial, periodic), members in groups.items():
        directory = output_dir / f"{formula}-{n_atoms}{'-virial' if has_virial else ''}{'' if periodic else '-nopbc'}"
        first = members[0][1]
        order = np.argsort([type_map.index(s) for s in first.get_chemical_symbols()], kind="stable")
        atom_types = np.array([type_map.index(s) for s in first.get_chemical_symbols()])[order]
        data: dict[str, Any] = {
            "atom_names": list(type_map),
            "atom_numbs": [int((atom_types == i).sum()) for i in range(len(type_map))],
            "atom_types": atom_types,
            "orig": np.zeros(3),
            "cells": np.array([a.cell.array for _, a in members]),
            "coords": np.array([a.positions[order] for _, a in members]),
            "energies": np.array([a.calc.results["energy"] for _, a in members]),
            "forces": np.array([a.calc.results["forces"][order] for _, a in members]),
            "nopbc": not periodic,
        }
        if has_virial:
            data["virials"] = np.array([-a.calc.results["stress"] * a.get_volume() for _, a in members])
        dpdata.LabeledSystem(data=data).to("deepmd/npy", str(directory))
        where.update({name: str(directory) for name, _ in members})
    return where


def label_structures(structures: Iterable[Atoms] | str | Path, engine: Engine, settings: dict[str, Any],
                     output_dir: str | Path, type_map: Sequence[str] = ("Li",),
                     names: Sequence[str] | None = None) -> LabelBatch:
    """Label a batch and write `output_dir/systems/*` (DeePMD npy) and `output_dir/records.json`.

    `structures` may be a list of `Atoms` or the path of an extended-XYZ file. Names come
    from `names`, else each structure's `info["name"]`, else its position in the batch.
    """
    if isinstance(structures, (str, Path)):
        from ase.io import read

        structures = read(str(structures), index=":")
    structures = list(structures)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if names is None:
        names = [str(a.info.get("name", f"s{i:05d}")) for i, a in enumerate(structures)]
    if len(set(names)) != len(names):
        raise ValueError("structure names in one batch must be unique")
    unknown = {s for a in structures for s in a.get_chemical_symbols()} - set(type_map)
    if unknown:
        raise ValueError(f"elements {sorted(unknown)} are not in type_map {list(type_map)}")
    records, labelled = [], []
    for name, atoms in zip(names, structures):
        record, result = label_one(atoms, engine, settings, output_dir / "logs", name)
        records.append(record)
        if result is not None:
            labelled.append((name, result))
    where = write_deepmd_systems(labelled, output_dir / "systems", type_map) if labelled else {}
    for record in records:
        record.system_dir = where.get(record.name)
    batch = LabelBatch(records, sorted(set(where.values())))
    temporary = output_dir / "records.json.tmp"
    temporary.write_text(json.dumps([asdict(r) for r in records], indent=1))
    temporary.replace(output_dir / "records.json")
    return batch


def read_records(output_dir: str | Path) -> list[LabelRecord]:
    """Records written by `label_structures` (raises FileNotFoundError if the batch never finished)."""
    return [LabelRecord(**item) for item in json.loads((Path(output_dir) / "records.json").read_text())]

