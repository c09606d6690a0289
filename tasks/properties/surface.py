"""Surface energies of bcc Li facets (any hkl), ions relaxed, over several slab thicknesses.

The slab and its bulk reference are the same atoms in the same in-plane cell
(`ase.build.surface` of the conventional cell: once periodic along the normal, once with
vacuum), so a DFT code samples both with the same in-plane k-mesh and errors of the mesh
cancel; γ = (E_slab − E_bulk) / 2A. The value is the thickest slab's; its uncertainty is
the change from the next thinner one. With several facets (all of positive energy), the
area fraction of each on their Wulff shape.
"""

from __future__ import annotations

import itertools

import numpy as np
from ase import Atoms
from pydantic import Field, field_validator

from tasks.properties.base import (EV_PER_A2_IN_J_PER_M2, CalculatorFactory, Property, PropertyResult, PropertyValue,
                                   energy, last_change, relaxed_energy)
from tasks.properties.eos import AtEquilibrium

Miller = tuple[int, int, int]


class SurfaceParams(AtEquilibrium):
    facets: list[Miller] = Field([(1, 0, 0), (1, 1, 0), (1, 1, 1)], min_length=1, description="Miller indices")
    layers: list[int] = Field([4, 6], min_length=1, description="repeats of the facet's bulk period along its "
                                                                "normal; ascending, the last is reported")
    vacuum_angstrom: float = Field(15.0, ge=8.0, description="Å of vacuum between the slab's periodic images")
    fmax_ev_per_angstrom: float = Field(2e-3, gt=0, description="eV/Å, ions relaxed below it")

    @field_validator("facets")
    @classmethod
    def _not_zero(cls, facets: list[Miller]) -> list[Miller]:
        if any(f == (0, 0, 0) for f in facets):
            raise ValueError("(0, 0, 0) is not a facet")
        return facets

    @field_validator("layers")
    @classmethod
    def _ascending(cls, layers: list[int]) -> list[int]:
        if any(n < 2 for n in layers) or layers != sorted(set(layers)):
            raise ValueError("layers must be distinct, ascending and at least 2")
        return layers


def facet_cells(lattice_constant: float, facet: Miller, layers: int, vacuum_angstrom: float):
    """The oriented bulk cell and the slab of the same atoms, same in-plane cell."""
    from ase.build import bulk, surface

    conventional = bulk("Li", "bcc", a=lattice_constant, cubic=True)
    slab = surface(conventional, facet, layers, vacuum=vacuum_angstrom / 2, periodic=True)
    return oriented_bulk(surface(conventional, facet, layers, vacuum=None, periodic=True), lattice_constant), slab


def oriented_bulk(stack: Atoms, lattice_constant: float) -> Atoms:
    """The periodic bulk of a stack of bcc planes.

    `ase.build.surface(..., vacuum=None)` puts the cell's third vector normal to the planes,
    which is a lattice translation only where the stacking repeats straight up ((100), (110));
    for (111) and most others it puts atoms 1 Å apart across the boundary. The translation
    is the normal height plus the in-plane shift of one plane to the next, times the planes
    (plus a centring vector of the planes): tried for each atom of the second plane and of
    the first, kept where every atom has bcc's 8 + 6 neighbours.
    """
    stack = stack.copy()
    stack.pbc = True
    if _is_bcc(stack, lattice_constant):  # the stacking repeats straight up
        return stack
    height = stack.cell[2][2]
    heights = np.mod(stack.positions[:, 2], height)
    heights[heights > height - 1e-6] = 0.0  # the top of the cell is its bottom
    order = np.sort(heights)
    planes = order[np.concatenate([[True], np.diff(order) > 1e-4])]
    heights = planes[np.abs(heights[:, None] - planes[None, :]).argmin(axis=1)]
    if len(planes) < 2:
        raise ValueError("one plane cannot say how the stacking repeats: give more layers")
    first, second = np.flatnonzero(heights == planes[0]), np.flatnonzero(heights == planes[1])
    origin = stack.positions[first[0], :2]
    # one plane to the next, n times, plus any centring vector of the planes' in-plane cell
    for above, centring in itertools.product(second, first):
        shift = len(planes) * (stack.positions[above, :2] - origin) + stack.positions[centring, :2] - origin
        candidate = stack.copy()
        cell = np.array(candidate.cell)
        cell[2] = [shift[0], shift[1], len(planes) * (planes[1] - planes[0])]
        candidate.set_cell(cell)
        if _is_bcc(candidate, lattice_constant):
            candidate.wrap()
            return candidate
    raise ValueError(f"no lattice translation makes a bcc crystal of this stack of {len(planes)} planes "
                     f"(seen for thin stacks of high-index facets, e.g. (211) below 4 layers): give more layers")


def _is_bcc(atoms: Atoms, lattice_constant: float) -> bool:
    from ase.neighborlist import neighbor_list

    first, second = np.sqrt(3) / 2 * lattice_constant, lattice_constant
    centres, distances = neighbor_list("id", atoms, 1.1 * second)
    counts = np.bincount(centres, minlength=len(atoms))
    return bool(distances.min() > 0.99 * first and np.all(counts == 14))


def cubic_equivalents(facet: Miller) -> set[Miller]:
    """Every facet of the family {hkl} in a cubic crystal: permutations and signs."""
    return {tuple(sign * index for sign, index in zip(signs, order))  # type: ignore[misc]
            for order in itertools.permutations(facet) for signs in itertools.product((1, -1), repeat=3)}


def wulff_fractions(energies: dict[Miller, float]) -> dict[Miller, float]:
    """Area fraction of each facet family on the Wulff shape of cubic crystal (the polyhedron
    {x : n·x ≤ γ_n} over every equivalent normal n): a family that the others cut off has 0."""
    from scipy.spatial import ConvexHull, HalfspaceIntersection

    normals, offsets, family = [], [], []
    for facet, gamma in energies.items():
        for equivalent in sorted(cubic_equivalents(facet)):
            normals.append(np.array(equivalent, float) / np.linalg.norm(equivalent))
            offsets.append(gamma)
            family.append(facet)
    normals, offsets = np.array(normals), np.array(offsets)
    vertices = HalfspaceIntersection(np.hstack([normals, -offsets[:, None]]), np.zeros(3)).intersections
    hull = ConvexHull(vertices)
    areas = dict.fromkeys(energies, 0.0)
    for triangle in hull.simplices:
        corners = vertices[triangle]
        plane = int(np.argmin(np.abs(normals @ corners.mean(axis=0) - offsets)))  # the facet it lies in
        areas[family[plane]] += 0.5 * float(np.linalg.norm(np.cross(corners[1] - corners[0], corners[2] - corners[0])))
    total = sum(areas.values())
    return {facet: area / total for facet, area in areas.items()}


def facet_label(facet: Miller) -> str:
    return "".join(str(i) for i in facet) if all(0 <= i <= 9 for i in facet) else "_".join(str(i) for i in facet)


class SurfaceEnergies(Property):
    name = "surface_energies"
    Params = SurfaceParams

    def compute(self, params: SurfaceParams, calculators: CalculatorFactory) -> PropertyResult:
        a0 = params.lattice_constant(calculators)
        values, curves = [], {}
        for facet in params.facets:
            label = facet_label(facet)
            gammas, thickness, atoms = [], [], 0
            for layers in params.layers:
                oriented, slab = facet_cells(a0, facet, layers, params.vacuum_angstrom)
                area = float(abs(slab.cell[0][0] * slab.cell[1][1] - slab.cell[0][1] * slab.cell[1][0]))
                bulk_energy = energy(oriented, calculators, f"bulk-{label}-{layers}")
                slab_energy, _ = relaxed_energy(slab, calculators, f"slab-{label}-{layers}",
                                                params.fmax_ev_per_angstrom)
                gammas.append((slab_energy - bulk_energy) / (2 * area))
                thickness.append(float(oriented.cell[2][2]))
                atoms = len(slab)
            values.append(PropertyValue(f"surface_energy_{label}", gammas[-1], "eV/Å²", last_change(gammas),
                                        note=f"{gammas[-1] * EV_PER_A2_IN_J_PER_M2:.3f} J/m², slab "
                                             f"{thickness[-1]:.1f} Å of {atoms} atoms"))
            curves[f"surface_energy_{label}_vs_thickness"] = [thickness, gammas]
        if len(params.facets) > 1 and all(v.value > 0 for v in values):
            fractions = wulff_fractions({tuple(f): v.value for f, v in zip(params.facets, values)})
            values += [PropertyValue(f"wulff_fraction_{facet_label(f)}", fraction, "1",
                                     note="area fraction on the Wulff shape of the facets computed")
                       for f, fraction in fractions.items()]
        return PropertyResult(self.name, values, curves)
