"""Neighbour counts and adaptive common neighbour analysis on a cell list, compiled by Numba.

Why our own kernels and not OVITO's modifiers (which the fields used before and which remain
the reference in the tests and the benchmark): a frame handed to OVITO pays for a general
pipeline (a DataCollection, a neighbour finder built per modifier, the coordination modifier's
RDF). On orthorhombic boxes, which is all that LAMMPS runs here produce, a cell list and a
fixed-size nearest-neighbour list do the same work in a fraction of the time, with identical
counts and identical structure types (benchmarks/analysis_throughput.py asserts both).

The a-CNA follows Stukowski, Modelling Simul. Mater. Sci. Eng. 20, 045021 (2012), as OVITO
implements it: the 12 nearest neighbours are tested for fcc/hcp, then the 14 nearest for bcc,
each with a local cutoff: (1 + sqrt 2)/2 times the mean distance of the 12 (OVITO takes sqrt 2 in
single precision), 1.207 times the mean of the 14 for bcc (the first eight scaled by 2/sqrt 3).
"""

from __future__ import annotations

import numba
import numpy as np
from scipy.spatial import cKDTree

STRUCTURES = ("bcc", "fcc", "hcp", "other")
BCC, FCC, HCP, OTHER = (STRUCTURES.index(name) for name in STRUCTURES)
#: Neighbours the a-CNA needs: 12 for fcc/hcp, 14 for bcc.
NEAREST = 14
_CLOSE_PACKED_CUTOFF = 0.5 * (1.0 + float(np.sqrt(np.float32(2.0))))
_BCC_CUTOFF = 1.207


class CellList:
    """Atoms of an orthorhombic box sorted into cells at least `reach` Å wide.

    A periodic axis shorter than three cells is tiled first (the images become neighbours, as
    they are in OVITO), so that the 27 cells around an atom hold every atom within `reach`
    exactly once. An open axis spans the atoms. `positions` are in cell order (contiguous per
    cell, `start[c]:start[c + 1]`); slot s holds input atom `original[s]` (-1: an image) in cell
    `cell[s]`; input atom i sits in slot `slot_of[i]`.
    """

    def __init__(self, positions: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray,
                 periodic: tuple[bool, bool, bool], reach: float):
        lo = np.asarray(box_lo, float)
        lengths = np.asarray(box_hi, float) - lo
        self.periodic = np.array(periodic)
        wrapped = _wrapped(np.asarray(positions, float), lo, lengths, self.periodic)
        original = np.arange(len(wrapped))
        repeats = np.where(self.periodic, np.ceil(3.0 * reach / lengths), 1).astype(int)
        if np.any(repeats > 1):
            shifts = np.stack(np.meshgrid(*[np.arange(r) for r in repeats], indexing="ij"), -1).reshape(-1, 3)
            wrapped = (wrapped[None, :, :] + (shifts * lengths)[:, None, :]).reshape(-1, 3)
            original = np.where(np.any(shifts, axis=1)[:, None], -1, original[None, :]).ravel()
            lengths = lengths * repeats
        self.lengths = lengths
        (self.positions, self.original, self.cell, self.slot_of, self.start,
         self.n_cells) = _bin(wrapped, original, lo, lengths, self.periodic, reach, len(positions))

    def arguments(self) -> tuple:
        return self.positions, self.start, self.n_cells, self.periodic, self.lengths


def _chunks() -> int:
    """Work shares of a parallel loop: several per thread, so that uneven cells balance out."""
    return 8 * numba.get_num_threads()


@numba.njit(cache=True)
def _wrapped(positions, lo, lengths, periodic):
    wrapped = positions.copy()
    for i in range(len(positions)):
        for d in range(3):
            if periodic[d]:
                wrapped[i, d] = lo[d] + (positions[i, d] - lo[d]) % lengths[d]
    return wrapped


@numba.njit(cache=True)
def _bin(positions, original, lo, lengths, periodic, reach, n_query):
    """Positions, original indices and cells in cell order; each atom's slot, each cell's first
    slot, cells per axis."""
    low, span = lo.copy(), lengths.copy()
    for d in range(3):
        if not periodic[d]:  # an open axis spans the atoms
            low[d], high = positions[:, d].min(), positions[:, d].max()
            span[d] = high - low[d] + 1e-9
    n_cells = np.maximum(np.floor(span / reach), 1).astype(np.int64)
    cell = np.empty(len(positions), np.int64)
    for i in range(len(positions)):
        c = 0
        for d in range(3):
            k = min(max(int((positions[i, d] - low[d]) / span[d] * n_cells[d]), 0), n_cells[d] - 1)
            c = c * n_cells[d] + k
        cell[i] = c
    start = np.zeros(n_cells[0] * n_cells[1] * n_cells[2] + 1, np.int64)
    for i in range(len(cell)):
        start[cell[i] + 1] += 1
    start = np.cumsum(start)
    filled = start[:-1].copy()
    sorted_positions = np.empty_like(positions)
    sorted_original = np.empty_like(original)
    sorted_cell = np.empty_like(cell)
    slot_of = np.empty(n_query, np.int64)
    for i in range(len(cell)):  # counting sort: stable, linear
        slot = filled[cell[i]]
        sorted_positions[slot] = positions[i]
        sorted_original[slot] = original[i]
        sorted_cell[slot] = cell[i]
        if original[i] >= 0:
            slot_of[original[i]] = slot
        filled[cell[i]] += 1
    return sorted_positions, sorted_original, sorted_cell, slot_of, start, n_cells


@numba.njit(cache=True, inline="always")
def _step(k, n, periodic, length):
    """Cell `k` along an axis of `n` cells, wrapped, and the shift (Å) that brings its atoms
    next to the cell that stepped out; -1 past an open face."""
    if k < 0:
        return (k + n, -length) if periodic else (-1, 0.0)
    if k >= n:
        return (k - n, length) if periodic else (-1, 0.0)
    return k, 0.0


@numba.njit(cache=True)
def _around(c, n_cells, periodic, lengths, others, shifts):
    """The cells around cell `c` (itself included) into `others`, each with the shift (Å) that
    brings its atoms next to c's across a periodic face; returns how many (27 but at open faces)."""
    nx, ny, nz = n_cells[0], n_cells[1], n_cells[2]
    cx, cy, cz = c // (ny * nz), c // nz % ny, c % nz
    count = 0
    for dx in range(-1, 2):
        kx, sx = _step(cx + dx, nx, periodic[0], lengths[0])
        if kx < 0:
            continue
        for dy in range(-1, 2):
            ky, sy = _step(cy + dy, ny, periodic[1], lengths[1])
            if ky < 0:
                continue
            for dz in range(-1, 2):
                kz, sz = _step(cz + dz, nz, periodic[2], lengths[2])
                if kz < 0:
                    continue
                others[count] = (kx * ny + ky) * nz + kz
                shifts[count, 0], shifts[count, 1], shifts[count, 2] = sx, sy, sz
                count += 1
    return count


@numba.njit(cache=True, parallel=True)
def _count_within(positions, start, n_cells, periodic, lengths, original, n_query, cutoff, n_chunks):
    """Atoms within `cutoff` of each original atom, over the 27 cells around its own."""
    counts = np.zeros(n_query, np.int64)
    cutoff2 = cutoff * cutoff
    n_total = len(start) - 1
    for chunk in numba.prange(n_chunks):  # scratch arrays once per chunk of cells
        others = np.empty(27, np.int64)
        shifts = np.empty((27, 3))
        for c in range(chunk * n_total // n_chunks, (chunk + 1) * n_total // n_chunks):
            n_around = _around(c, n_cells, periodic, lengths, others, shifts)
            for a in range(start[c], start[c + 1]):
                if original[a] < 0:
                    continue
                n = 0
                for o in range(n_around):
                    sx = shifts[o, 0] - positions[a, 0]
                    sy = shifts[o, 1] - positions[a, 1]
                    sz = shifts[o, 2] - positions[a, 2]
                    for b in range(start[others[o]], start[others[o] + 1]):
                        ex, ey, ez = positions[b, 0] + sx, positions[b, 1] + sy, positions[b, 2] + sz
                        if ex * ex + ey * ey + ez * ez <= cutoff2 and b != a:
                            n += 1
                counts[original[a]] = n
    return counts


def coordination_counts(positions: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray,
                        periodic: tuple[bool, bool, bool], cutoff: float) -> np.ndarray:
    """Neighbours of each atom within `cutoff` Å (OVITO's CoordinationAnalysisModifier)."""
    cells = CellList(positions, box_lo, box_hi, periodic, cutoff)
    return _count_within(*cells.arguments(), cells.original, len(positions), cutoff, _chunks())


@numba.njit(cache=True, parallel=True)
def _nearest(positions, start, n_cells, periodic, lengths, cell, slots, reach, k, n_chunks):
    """The `k` nearest neighbours' separation vectors from the atoms in `slots`, nearest first
    (inf where fewer are found), and whether all `k` lie within `reach` (else an atom outside
    the 27 cells might be nearer than the k-th)."""
    deltas = np.empty((len(slots), k, 3))
    found = np.zeros(len(slots), np.bool_)
    reach2 = reach * reach
    for chunk in numba.prange(n_chunks):  # scratch arrays once per chunk, not per atom
        best = np.empty(k)
        vectors = np.empty((k, 3))
        others = np.empty(27, np.int64)
        shifts = np.empty((27, 3))
        home, n_around = -1, 0
        for q in range(chunk * len(slots) // n_chunks, (chunk + 1) * len(slots) // n_chunks):
            a = slots[q]
            if cell[a] != home:  # slots come in cell order
                home = cell[a]
                n_around = _around(home, n_cells, periodic, lengths, others, shifts)
            for m in range(k):  # element loops, not slices: a slice is a view, refcounted
                best[m] = np.inf
                vectors[m, 0] = vectors[m, 1] = vectors[m, 2] = np.inf
            for o in range(n_around):
                sx = shifts[o, 0] - positions[a, 0]
                sy = shifts[o, 1] - positions[a, 1]
                sz = shifts[o, 2] - positions[a, 2]
                for b in range(start[others[o]], start[others[o] + 1]):
                    ex, ey, ez = positions[b, 0] + sx, positions[b, 1] + sy, positions[b, 2] + sz
                    d2 = ex * ex + ey * ey + ez * ez
                    if d2 > reach2 or d2 >= best[k - 1] or b == a:
                        continue
                    m = k - 1
                    while m > 0 and best[m - 1] > d2:  # insertion; ties keep the first found first
                        best[m] = best[m - 1]
                        vectors[m, 0] = vectors[m - 1, 0]
                        vectors[m, 1] = vectors[m - 1, 1]
                        vectors[m, 2] = vectors[m - 1, 2]
                        m -= 1
                    best[m] = d2
                    vectors[m, 0], vectors[m, 1], vectors[m, 2] = ex, ey, ez
            for m in range(k):
                deltas[q, m, 0], deltas[q, m, 1], deltas[q, m, 2] = vectors[m, 0], vectors[m, 1], vectors[m, 2]
            found[q] = best[k - 1] <= reach2
    return deltas, found


def nearest_neighbours(positions: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray,
                       periodic: tuple[bool, bool, bool], k: int = NEAREST) -> np.ndarray:
    """Separation vectors (n, k, 3) from each atom to its `k` nearest neighbours, nearest first
    (inf where a small system has fewer).

    The cell list first reaches 1.15 times the radius that holds k + 1 atoms at the box's mean
    density: enough for every atom of a crystal or liquid. The atoms whose k-th neighbour lies
    farther (a surface) are searched again at twice the reach, and the few still short of k (a
    vapour atom) in a KD-tree over the same tiled images.
    """
    lengths = np.asarray(box_hi, float) - np.asarray(box_lo, float)
    extent = np.where(periodic, lengths, np.ptp(positions, axis=0) + 1.0)
    reach = 1.15 * (3.0 * (k + 1) / (4.0 * np.pi * len(positions) / np.prod(extent))) ** (1.0 / 3.0)
    deltas = np.empty((len(positions), k, 3))
    todo = np.arange(len(positions))
    for widening in (1.0, 2.0):
        cells = CellList(positions, box_lo, box_hi, periodic, widening * reach)
        slots = np.sort(cells.slot_of[todo])  # in cell order: neighbouring queries share cells
        part, found = _nearest(*cells.arguments(), cells.cell, slots, widening * reach, k, _chunks())
        done = cells.original[slots]
        deltas[done] = part
        todo = done[~found]
        if not len(todo):
            return deltas
    shifted = cells.positions - cells.positions.min(axis=0)
    box = np.where(cells.periodic, cells.lengths, 4.0 * (np.ptp(shifted, axis=0) + 1.0))
    tree = cKDTree(np.mod(shifted, box), boxsize=box)
    k_here = min(k + 1, len(shifted))
    at = shifted[cells.slot_of[todo]]
    _, index = tree.query(np.mod(at, box), k=list(range(1, k_here + 1)))
    vectors = shifted[index[:, 1:]] - at[:, None, :]
    deltas[todo] = np.inf
    deltas[todo, :k_here - 1] = vectors - box * np.rint(vectors / box) * cells.periodic
    return deltas


@numba.njit(cache=True)
def _popcount(x):
    x = x - ((x >> 1) & 0x55555555)
    x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
    return (((x + (x >> 4)) & 0x0F0F0F0F) * 0x01010101 & 0xFFFFFFFF) >> 24


@numba.njit(cache=True)
def _signatures(deltas, i, nn, cutoff2, bonds):
    """Counts of the (4,2,1), (4,2,2), (4,4,4) and (6,6,6) CNA signatures over atom i's `nn`
    nearest bonds; stops at the first bond with none of them (the atom is then not of this
    structure). `bonds[a]` is the bit set of neighbours within the local cutoff of neighbour a;
    the longest chain of bonds among common neighbours is the bond count of their largest
    connected group, which only the (4,2,x) and (6,6,6) cases need to look at."""
    for a in range(nn):
        bonds[a] = 0
    for a in range(nn):
        for b in range(a + 1, nn):
            x = deltas[i, a, 0] - deltas[i, b, 0]
            y = deltas[i, a, 1] - deltas[i, b, 1]
            z = deltas[i, a, 2] - deltas[i, b, 2]
            bit = np.int64(x * x + y * y + z * z <= cutoff2)  # branch-free: half of these bonds exist
            bonds[a] |= bit << b
            bonds[b] |= bit << a
    n421 = n422 = n444 = n666 = 0
    for a in range(nn):
        common = bonds[a]
        n_common = _popcount(common)
        if n_common != 4 and n_common != 6:
            break
        twice_bonds = 0
        branched = False
        touched = 0  # common neighbours with a bond among the others
        rest = common
        while rest:
            low = rest & -rest
            rest ^= low
            degree = _popcount(bonds[_popcount(low - 1)] & common)
            twice_bonds += degree
            branched |= degree > 1
            if degree:
                touched |= low
        n_bonds = twice_bonds // 2
        if n_common == 4 and n_bonds == 2:
            if branched:  # the two bonds share an atom: a chain of 2
                n422 += 1
            else:
                n421 += 1
        elif n_common == 4 and n_bonds == 4:  # four bonds on four atoms are always one group
            n444 += 1
        elif n_common == 6 and n_bonds == 6:  # one connected group (a ring), or two triangles?
            joined, grown = touched & -touched, 0
            while grown != joined:
                rest, grown = joined & ~grown, joined
                while rest:
                    low = rest & -rest
                    rest ^= low
                    joined |= bonds[_popcount(low - 1)] & common
            if joined != touched:
                break
            n666 += 1
        else:
            break
    return n421, n422, n444, n666


@numba.njit(cache=True, parallel=True)
def _classify(deltas, n_chunks):
    n = len(deltas)
    kinds = np.full(n, OTHER, np.int8)
    for chunk in numba.prange(n_chunks):  # scratch once per chunk, not per atom
        bonds = np.empty(NEAREST, np.int64)
        for i in range(chunk * n // n_chunks, (chunk + 1) * n // n_chunks):
            if not np.isfinite(deltas[i, 11, 0]):
                continue
            scale = 0.0
            for m in range(12):
                scale += np.sqrt(deltas[i, m, 0] ** 2 + deltas[i, m, 1] ** 2 + deltas[i, m, 2] ** 2)
            cutoff = _CLOSE_PACKED_CUTOFF * scale / 12.0
            n421, n422, _, _ = _signatures(deltas, i, 12, cutoff * cutoff, bonds)
            if n421 == 12:
                kinds[i] = FCC
                continue
            if n421 == 6 and n422 == 6:
                kinds[i] = HCP
                continue
            if not np.isfinite(deltas[i, 13, 0]):
                continue
            scale = 0.0
            for m in range(14):
                r = np.sqrt(deltas[i, m, 0] ** 2 + deltas[i, m, 1] ** 2 + deltas[i, m, 2] ** 2)
                scale += r * 2.0 / np.sqrt(3.0) if m < 8 else r
            cutoff = _BCC_CUTOFF * scale / 14.0
            _, _, n444, n666 = _signatures(deltas, i, 14, cutoff * cutoff, bonds)
            if n666 == 8 and n444 == 6:
                kinds[i] = BCC
    return kinds


def adaptive_cna(positions: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray,
                 periodic: tuple[bool, bool, bool]) -> np.ndarray:
    """Adaptive CNA type of each atom as an index into STRUCTURES (icosahedral counts as other)."""
    return _classify(nearest_neighbours(positions, box_lo, box_hi, periodic), _chunks())


def from_ovito_types() -> np.ndarray:
    """Our STRUCTURES index of each type of OVITO's CommonNeighborAnalysisModifier: how the tests
    and the benchmark set OVITO's a-CNA beside ours."""
    from tasks.fields.base import ovito_modifiers

    kind = ovito_modifiers().CommonNeighborAnalysisModifier.Type
    mapping = np.full(max(int(t) for t in kind.__members__.values()) + 1, OTHER)
    mapping[[int(kind.BCC), int(kind.FCC), int(kind.HCP)]] = BCC, FCC, HCP
    return mapping
