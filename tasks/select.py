"""Choosing which explored frames to label: DP-GEN's trust levels and our selection strategies.

An exploration run with an ensemble writes the force model deviation of each output frame
(`model_devi.out`, column `max_devi_f` = max over atoms of the ensemble force standard
deviation). With trust levels lo < hi (eV/Å) a frame is

* accurate   when max_devi_f < lo   (the ensemble agrees: nothing to learn),
* a candidate when lo <= max_devi_f < hi (uncertain but physical: label it),
* failed     when max_devi_f >= hi  (so far off that the configuration is likely unphysical).

Among candidates, `pick` takes at most n by one of three strategies:

* ``random``            DP-GEN's rule: a uniform random choice;
* ``highest_deviation`` the most uncertain first;
* ``farthest_point``    greedy farthest-point sampling in the models' descriptor space,
                        started from the most uncertain frame, so the labels cover
                        different environments instead of many near-copies of one.

Large frames can be reduced to the local region around their most uncertain atom
(`local_region`), as in the dendrite-column study: DFT of 50 atoms instead of thousands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from ase import Atoms

from tasks.build import cut_out
from tasks.runtime import prepare_process

Strategy = Literal["random", "highest_deviation", "farthest_point"]
ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"


def read_model_deviation(path: str | Path) -> dict[int, float]:
    """step -> max_devi_f (eV/Å) from a DeePMD `model_devi.out` (columns: step, 3 virial, 3 force)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model deviation file at {path}")
    table = np.loadtxt(path, comments="#", ndmin=2)
    if table.size == 0:
        return {}
    if table.shape[1] < 7:
        raise ValueError(f"{path}: expected at least 7 columns (step, 3 virial, 3 force), got {table.shape[1]}")
    return {int(row[0]): float(row[4]) for row in table}


def classify(max_deviation: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """'accurate' / 'candidate' / 'failed' for each frame's max force deviation."""
    if not 0 < lo < hi:
        raise ValueError(f"trust levels must satisfy 0 < lo < hi, got lo={lo}, hi={hi}")
    deviation = np.asarray(max_deviation, dtype=float)
    labels = np.full(deviation.shape, CANDIDATE, dtype=object)
    labels[deviation < lo] = ACCURATE
    labels[~(deviation < hi)] = FAILED  # NaN deviations count as failed
    return labels


def pick(max_deviation: Sequence[float], n: int, strategy: Strategy, seed: int,
         descriptors: np.ndarray | None = None) -> list[int]:
    """Indices of at most `n` candidates chosen by `strategy` (deterministic for a seed)."""
    deviation = np.asarray(max_deviation, dtype=float)
    count = len(deviation)
    n = min(n, count)
    if n <= 0:
        return []
    if strategy == "random":
        return sorted(np.random.default_rng(seed).choice(count, size=n, replace=False).tolist())
    order = np.argsort(-deviation, kind="stable")
    if strategy == "highest_deviation":
        return sorted(order[:n].tolist())
    if strategy == "farthest_point":
        if descriptors is None or len(descriptors) != count:
            raise ValueError("farthest_point needs one descriptor vector per candidate")
        return sorted(farthest_point(np.asarray(descriptors, dtype=float), n, int(order[0])))
    raise ValueError(f"unknown strategy {strategy!r}; use random, highest_deviation or farthest_point")


def too_close(atoms: Atoms, limit_angstrom: float) -> bool:
    """Whether two atoms are closer than `limit_angstrom` (periodic images included): an MD
    frame that far off the physics is not worth a DFT label."""
    from ase.neighborlist import neighbor_list

    return bool(len(neighbor_list("i", atoms, limit_angstrom)))


def farthest_point(points: np.ndarray, n: int, start: int) -> list[int]:
    """Greedy farthest-point sampling: each next point is the one farthest from those chosen."""
    scale = points.std(axis=0)
    scaled = points / np.where(scale > 0, scale, 1.0)
    chosen = [start]
    distance = np.linalg.norm(scaled - scaled[start], axis=1)
    while len(chosen) < n:
        following = int(np.argmax(distance))
        if distance[following] <= 0:
            break  # the rest are copies of points already chosen
        chosen.append(following)
        distance = np.minimum(distance, np.linalg.norm(scaled - scaled[following], axis=1))
    return chosen


def frame_descriptors(model: str | Path, frames: Sequence[Atoms], type_map: Sequence[str]) -> np.ndarray:
    """One vector per frame: mean and standard deviation over atoms of the model's descriptor."""
    prepare_process()
    from deepmd.infer import DeepPot

    potential = DeepPot(str(model))
    vectors = []
    for atoms in frames:
        types = [type_map.index(s) for s in atoms.get_chemical_symbols()]
        cell = atoms.cell.array.reshape(1, -1) if atoms.pbc.all() else None
        descriptor = np.asarray(potential.eval_descriptor(atoms.positions.reshape(1, -1), cell, types))
        descriptor = descriptor.reshape(len(atoms), -1)
        vectors.append(np.concatenate([descriptor.mean(axis=0), descriptor.std(axis=0)]))
    return np.array(vectors)


def per_atom_force_deviation(models: Sequence[str | Path], atoms: Atoms, type_map: Sequence[str]) -> np.ndarray:
    """Ensemble force standard deviation of each atom (eV/Å)."""
    from tasks.train import ensemble_forces

    forces = ensemble_forces(models, [atoms], type_map)[:, 0]  # (models, atoms, 3)
    return np.sqrt(np.mean(np.sum((forces - forces.mean(axis=0)) ** 2, axis=-1), axis=0))


def local_region(atoms: Atoms, atom_deviation: np.ndarray, radius_angstrom: float) -> Atoms:
    """The sphere of `radius` around the most uncertain atom, in a vacuum box (for DFT)."""
    centre = int(np.argmax(atom_deviation))
    region = cut_out(atoms, [centre], radius_angstrom)
    region.info["max_atom_deviation_ev_per_angstrom"] = float(atom_deviation[centre])
    return region
