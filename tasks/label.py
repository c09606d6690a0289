"""DFT labels: energies, forces and virials for a batch of structures.

One call labels a batch with one engine and one settings block, writes the successful
labels as DeePMD npy systems (via dpdata, one system per composition, size and
virial-availability), and returns one `LabelRecord` per structure. A failed structure
(`scf_not_converged`, `crashed`) never enters the training data; its record keeps the
engine's message so the campaign can report it.

Engines are the plug-ins of `tasks.labellers` (GPAW, VASP, QE, and the classical
``reference`` oracle, which is a fast stand-in for DFT in tests and benchmarks, not DFT).

Units: energies eV, forces eV/Å, virials eV (virial = -stress × volume).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.singlepoint import SinglePointCalculator

from tasks.atomic import write_json
from tasks.digest import json_digest
from tasks.geometry import vacuum_axes
from tasks.labellers import LABELLERS

Status = Literal["ok", "scf_not_converged", "crashed"]


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


def settings_hash(engine: str, settings: Mapping[str, Any]) -> str:
    """Identifies the level of theory; labels with different hashes must not be mixed."""
    return json_digest({"engine": engine, **settings})


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


def label_one(atoms: Atoms, engine: str, settings: Mapping[str, Any], work_dir: Path, name: str) -> tuple[
        LabelRecord, Atoms | None]:
    """Label one structure; returns its record and, if ok, a copy holding the results."""
    started = time.perf_counter()
    labeller = LABELLERS[engine]
    typed = labeller.Settings.model_validate(dict(settings))
    digest = settings_hash(engine, settings)
    structure = atoms.copy()
    structure.set_constraint()
    if labeller.periodic:
        structure.pbc = True  # plane-wave codes: isolated regions are padded with vacuum
    try:
        with labeller.resumable_calculator(structure, typed, work_dir, name) as calculator:
            structure.calc = calculator
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
            data["virials"] = np.array([-a.get_stress(voigt=False) * a.get_volume() for _, a in members])
        dpdata.LabeledSystem(data=data).to("deepmd/npy", str(directory))
        where.update({name: str(directory) for name, _ in members})
    return where


def read_labels(system_dir: str | Path) -> list[Atoms]:
    """The labelled frames of a DeePMD npy system (one `write_deepmd_systems` wrote, or an
    export's copy of one), each with its energy, forces and, where labelled, stress (ASE's
    sign and units: eV/Å³, tension positive, from DeePMD's virial −σV) on a single-point
    calculator."""
    import dpdata

    return dpdata.LabeledSystem(str(system_dir), fmt="deepmd/npy").to("ase/structure")


def label_structures(structures: Iterable[Atoms] | str | Path, engine: str, settings: Mapping[str, Any],
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
    present = {s for a in structures for s in a.get_chemical_symbols()}
    if present - set(type_map):
        raise ValueError(f"elements {sorted(present - set(type_map))} are not in type_map {list(type_map)}")
    known = LABELLERS[engine].elements
    if known is not None and present - set(known):
        raise ValueError(f"the {engine} labeller knows only {list(known)}, not {sorted(present - set(known))}")
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
    _write_records(output_dir, records)
    return batch


def _write_records(output_dir: Path, records: Sequence[LabelRecord]) -> None:
    """`records.json`, last: a batch is complete when it exists."""
    stored = [{**asdict(r), "system_dir": os.path.relpath(r.system_dir, output_dir) if r.system_dir else None}
              for r in records]  # below the batch's directory: the workdir can move
    write_json(output_dir / "records.json", stored)


def restore_batch(output_dir: str | Path, records: Sequence[LabelRecord], systems: Mapping[str, Path]) -> None:
    """Write a batch directory as `label_structures` would have, from labels computed before
    (an export): each ok record's DeePMD system is copied from `systems[record.name]` to the
    name its `system_dir` gives (the batch's own, e.g. `Li16-16-virial`)."""
    output_dir = Path(output_dir)
    restored = []
    for record in records:
        target = None
        if record.status == "ok":
            target = output_dir / "systems" / Path(record.system_dir or systems[record.name]).name
            shutil.copytree(systems[record.name], target, dirs_exist_ok=True)
        restored.append(LabelRecord(**{**asdict(record), "system_dir": str(target) if target else None}))
    _write_records(output_dir, restored)


def read_records(output_dir: str | Path) -> list[LabelRecord]:
    """Records written by `label_structures`, their systems where the batch now lies (raises
    FileNotFoundError if the batch never finished)."""
    output_dir = Path(output_dir)
    records = [LabelRecord(**item) for item in json.loads((output_dir / "records.json").read_text())]
    for record in records:
        if record.system_dir:
            record.system_dir = str(output_dir / record.system_dir)
    return records


def label_names(system_dir: str | Path) -> list[str]:
    """The names of the labels a DeePMD system holds: those of the records of the batch that wrote
    it (`<batch>/systems/<system>`), else, for a system from elsewhere (an export's
    `train/<label>`), its directory's name."""
    system_dir = Path(system_dir)
    batch = system_dir.parent.parent
    if (batch / "records.json").is_file():
        names = [r.name for r in read_records(batch) if r.system_dir and Path(r.system_dir).name == system_dir.name]
        if names:
            return names
    return [system_dir.name]

