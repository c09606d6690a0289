"""Enclosed empty volume over time: the cavity of the bulk self-healing runs as it closes.

The box is divided into voxels; a voxel is empty when no atom lies within
`probe_radius_angstrom` of its centre (periodic images included). Empty voxels that touch
form one void. A void that spans the box along x or y is vacuum (above a slab, the gap of a
deposition box) and is not counted; what remains are enclosed cavities. The probe must
exceed the largest hole of the thermal crystal: bcc Li's tetrahedral site lies 1.96 Å from
its neighbours at a = 3.51 Å, so the default 2.5 Å finds no void in a crystal at 300 K, and
the volume it reports is that of the cavity shrunk by about the probe (what a 2.5 Å sphere
can reach), not the geometric hole.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from tasks.fields.base import FieldParams, FrameCache, FrameField, Variable
from tasks.frame import Frame


class CavityParams(FieldParams):
    probe_radius_angstrom: float = Field(2.5, gt=0, description="Å, the least distance from every atom of an "
                                                                "empty voxel")
    voxel_angstrom: float = Field(0.5, gt=0, le=2.0, description="Å, edge of a voxel")
    min_volume_angstrom3: float = Field(1.0, ge=0, description="Å³; smaller voids are thermal openings or single "
                                                                "vacancies (0.7 Å³ with the default probe), not cavities")


def enclosed_voids(positions: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray, probe: float,
                   voxel: float) -> np.ndarray:
    """Volumes (Å³) of the enclosed voids of a periodic orthorhombic box, largest first."""
    lengths = np.asarray(box_hi, float) - np.asarray(box_lo, float)
    counts = np.maximum(1, np.round(lengths / voxel).astype(int))
    steps = lengths / counts
    axes = [(np.arange(n) + 0.5) * h for n, h in zip(counts, steps)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    tree = cKDTree(np.mod(positions - box_lo, lengths), boxsize=lengths)
    distance, _ = tree.query(grid, k=1, distance_upper_bound=probe)
    empty = np.isinf(distance).reshape(tuple(counts))
    labels, n = ndimage.label(empty)
    if n == 0:
        return np.zeros(0)
    pairs = []  # a void crossing a face of the box continues on the opposite face
    for axis in range(3):
        first, last = np.take(labels, 0, axis=axis), np.take(labels, -1, axis=axis)
        both = (first > 0) & (last > 0)
        pairs.append(np.column_stack([first[both], last[both]]))
    pairs = np.concatenate(pairs)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n + 1, n + 1))
    _, roots = connected_components(graph, directed=False)
    void = roots[labels[empty]]
    index = np.nonzero(empty)
    spans = np.zeros(n + 1, bool)
    for axis in (0, 1):
        present = np.zeros((n + 1, counts[axis]), bool)
        present[void, index[axis]] = True
        spans |= present.all(axis=1)
    sizes = np.bincount(void, minlength=n + 1)
    volumes = sizes[(sizes > 0) & ~spans] * float(np.prod(steps))
    return np.sort(volumes)[::-1]


class Cavity(FrameField):
    name = "cavity"
    Params = CavityParams

    def variables(self) -> dict[str, Variable]:
        probe = f"reachable by a {self.params.probe_radius_angstrom:g} Å probe"
        return {"cavity_volume": Variable(("time",), {"units": "angstrom^3", "long_name":
                                                      f"enclosed empty volume, {probe}"}),
                "cavity_count": Variable(("time",), {"units": "1", "long_name": f"enclosed voids, {probe}"},
                                         "int32")}

    def one_frame(self, frame: Frame, cache: FrameCache) -> dict[str, Any]:
        volumes = enclosed_voids(frame.positions, frame.box_lo, frame.box_hi, self.params.probe_radius_angstrom,
                                 self.params.voxel_angstrom)
        volumes = volumes[volumes >= self.params.min_volume_angstrom3]
        return {"cavity_volume": float(volumes.sum()), "cavity_count": len(volumes)}
