"""Structure builders for Li campaigns: small functions that return ASE `Atoms`.

Every builder validates its parameters and raises `ValueError` naming the parameter, so
a bad config fails before any DFT or MD is spent. Slab-like structures carry two per-atom
arrays that the MD protocols rely on:

* ``layer``: index of the atomic layer counted from the bottom (0 = lowest);
* ``fixed``: True for atoms held still in MD (the bottom `fixed_layers` layers).

Lengths are Å, densities g/cm^3. The default lattice constant 3.51 Å is the MD value of
the self-healing study; pass the DFT-relaxed value (≈3.43 Å for PBE) when building
structures to label.
"""

from __future__ import annotations

import inspect
import typing
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
from ase import Atoms
from ase.build import bcc100, bcc110, bcc111, bulk as ase_bulk, surface
from ase.constraints import FixAtoms
from ase.data import atomic_masses, atomic_numbers

from tasks.plugin import Params, Registry

LI_LATTICE_CONSTANT_MD = 3.51
AVOGADRO = 6.02214076e23


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _repeat(size: int | Sequence[int], name: str = "size") -> tuple[int, int, int]:
    reps = (size, size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(reps) != 3 or any(int(n) < 1 for n in reps):
        raise ValueError(f"{name} must be a positive integer or three positive integers, got {size!r}")
    return tuple(int(n) for n in reps)  # type: ignore[return-value]


def bcc_bulk(lattice_constant: float = LI_LATTICE_CONSTANT_MD, size: int | Sequence[int] = 1,
             element: str = "Li") -> Atoms:
    """Cubic bcc supercell of `size` conventional cells (2 atoms each)."""
    _positive("lattice_constant", lattice_constant)
    return ase_bulk(element, "bcc", a=lattice_constant, cubic=True).repeat(_repeat(size))


def rattled(atoms: Atoms, stdev_angstrom: float, seed: int) -> Atoms:
    """Copy of `atoms` with Gaussian displacements (for diverse DFT labels)."""
    if stdev_angstrom < 0:
        raise ValueError(f"stdev_angstrom must be >= 0, got {stdev_angstrom}")
    copy = atoms.copy()
    copy.rattle(stdev=stdev_angstrom, seed=seed)
    return copy


def strained(atoms: Atoms, strain_voigt: Sequence[float]) -> Atoms:
    """Copy with cell and positions deformed by a small strain (xx, yy, zz, yz, xz, xy).

    Shear components are engineering strains (γ = 2ε), as in elastic-constant fits.
    """
    if len(strain_voigt) != 6:
        raise ValueError(f"strain_voigt needs 6 components (xx, yy, zz, yz, xz, xy), got {len(strain_voigt)}")
    e = np.asarray(strain_voigt, dtype=float)
    if np.any(np.abs(e) >= 0.5):
        raise ValueError("strain_voigt components must be smaller than 0.5 in magnitude")
    tensor = np.array([[e[0], e[5] / 2, e[4] / 2], [e[5] / 2, e[1], e[3] / 2], [e[4] / 2, e[3] / 2, e[2]]])
    copy = atoms.copy()
    copy.set_cell(atoms.cell @ (np.eye(3) + tensor), scale_atoms=True)
    return copy


def strained_bulk(volume_scale: float = 1.0, strain_voigt: Sequence[float] = (0, 0, 0, 0, 0, 0),
                  lattice_constant: float = LI_LATTICE_CONSTANT_MD, size: int | Sequence[int] = 1) -> Atoms:
    """bcc bulk with its volume scaled isotropically and then a strain applied (EOS, elastic)."""
    _positive("volume_scale", volume_scale)
    atoms = bcc_bulk(lattice_constant * volume_scale ** (1 / 3), size)
    return strained(atoms, strain_voigt)


def close_packed(stacking: Literal["fcc", "hcp"] = "fcc", volume_scale: float = 1.0,
                 lattice_constant: float = LI_LATTICE_CONSTANT_MD, size: int | Sequence[int] = 1) -> Atoms:
    """fcc (cubic, 4 atoms) or ideal hcp (orthorhombic, 4 atoms) at the atomic volume of bcc with
    `lattice_constant`, scaled. PBE puts both 1.5-2 meV/atom below bcc Li; a potential that has
    never seen them guesses that balance, and with it whether bcc survives MD."""
    _positive("volume_scale", volume_scale)
    volume = lattice_constant ** 3 / 2 * volume_scale
    if stacking == "fcc":
        atoms = ase_bulk("Li", "fcc", a=(4 * volume) ** (1 / 3), cubic=True)
    elif stacking == "hcp":
        c_over_a = np.sqrt(8 / 3)
        a = (2 * volume / (np.sqrt(3) / 2 * c_over_a)) ** (1 / 3)
        atoms = ase_bulk("Li", "hcp", a=a, c=c_over_a * a, orthorhombic=True)
    else:
        raise ValueError(f"stacking must be 'fcc' or 'hcp', got {stacking!r}")
    return atoms.repeat(_repeat(size))


def bain_path(c_over_a: float = 1.0, volume_scale: float = 1.0, lattice_constant: float = LI_LATTICE_CONSTANT_MD,
              size: int | Sequence[int] = 1) -> Atoms:
    """Body-centred tetragonal Li at the atomic volume of bcc with `lattice_constant`, scaled:
    c/a = 1 is bcc, c/a = √2 is fcc. The path a bcc crystal takes when it turns fcc."""
    _positive("c_over_a", c_over_a)
    _positive("volume_scale", volume_scale)
    a = (lattice_constant ** 3 * volume_scale / c_over_a) ** (1 / 3)
    atoms = Atoms("Li2", scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5)], cell=np.diag([a, a, c_over_a * a]),
                  pbc=True)
    return atoms.repeat(_repeat(size))


def vacancy(lattice_constant: float = LI_LATTICE_CONSTANT_MD, size: int | Sequence[int] = 2,
            index: int = 0) -> Atoms:
    """bcc supercell with one atom removed."""
    atoms = bcc_bulk(lattice_constant, size)
    if not 0 <= index < len(atoms):
        raise ValueError(f"index must be in [0, {len(atoms)}), got {index}")
    del atoms[index]
    return atoms


def interstitial(lattice_constant: float = LI_LATTICE_CONSTANT_MD, size: int | Sequence[int] = 2,
                 site: Literal["octahedral", "tetrahedral"] = "tetrahedral") -> Atoms:
    """bcc supercell with one extra atom at an octahedral (½,½,0) or tetrahedral (½,¼,0) site."""
    atoms = bcc_bulk(lattice_constant, size)
    fractional = {"octahedral": (0.5, 0.5, 0.0), "tetrahedral": (0.5, 0.25, 0.0)}
    if site not in fractional:
        raise ValueError(f"site must be one of {sorted(fractional)}, got {site!r}")
    position = np.array(fractional[site]) * lattice_constant
    atoms += Atoms(atoms[0].symbol, positions=[position])
    return atoms


def _tag_layers(atoms: Atoms, fixed_layers: int, tolerance: float = 0.3) -> Atoms:
    """Set the `layer` (from the bottom) and `fixed` arrays and a FixAtoms constraint."""
    z = atoms.positions[:, 2]
    order = np.argsort(z)
    layer = np.empty(len(atoms), dtype=int)
    current, last = 0, z[order[0]]
    for i in order:
        if z[i] - last > tolerance:
            current += 1
        layer[i] = current
        last = z[i]
    n_layers = current + 1
    if not 0 <= fixed_layers < n_layers:
        raise ValueError(f"fixed_layers must be in [0, {n_layers}) for a slab of {n_layers} layers, got {fixed_layers}")
    fixed = layer < fixed_layers
    atoms.set_array("layer", layer)
    atoms.set_array("fixed", fixed)
    atoms.set_constraint(FixAtoms(mask=fixed) if fixed.any() else [])
    return atoms


def slab(miller: Sequence[int] | str = (1, 0, 0), layers: int = 6, size: Sequence[int] = (3, 3),
         vacuum_angstrom: float = 10.0, fixed_layers: int = 0,
         lattice_constant: float = LI_LATTICE_CONSTANT_MD, element: str = "Li") -> Atoms:
    """bcc (hkl) slab, `layers` atomic layers thick, bottom layers fixed. `vacuum_angstrom` is the
    whole gap between the slab and its periodic image along z: half lies below, half above.

    (100), (110) and (111) use ASE's orthogonal cells; any other (hkl) uses `ase.build.surface`.
    """
    if isinstance(miller, str):
        miller = tuple(int(c) for c in miller.strip("()"))
    miller = tuple(int(m) for m in miller)
    if len(miller) != 3 or miller == (0, 0, 0):
        raise ValueError(f"miller must be three integers, not all zero, got {miller!r}")
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be two positive integers (repeats along x and y), got {size!r}")
    if vacuum_angstrom < 0:
        raise ValueError(f"vacuum_angstrom must be >= 0, got {vacuum_angstrom}")
    _positive("lattice_constant", lattice_constant)
    builders = {(1, 0, 0): bcc100, (1, 1, 0): bcc110, (1, 1, 1): bcc111}
    key = tuple(sorted((abs(m) for m in miller), reverse=True))
    if key in builders:
        atoms = builders[key](element, size=(size[0], size[1], layers), a=lattice_constant,
                              vacuum=vacuum_angstrom / 2, orthogonal=True)
    else:
        primitive = ase_bulk(element, "bcc", a=lattice_constant, cubic=True)
        atoms = surface(primitive, miller, layers, vacuum=vacuum_angstrom / 2, periodic=True)
        atoms = atoms.repeat((size[0], size[1], 1))
    atoms.pbc = (True, True, True)
    return _tag_layers(atoms, fixed_layers)


def morphology_slab(kind: Literal["flat", "trench", "ridge", "groove"] = "flat", base_layers: int = 6,
                    feature_depth_angstrom: float = 7.0, feature_width_angstrom: float = 14.0,
                    period_angstrom: float = 28.0, size: Sequence[int] = (8, 2),
                    vacuum_angstrom: float = 20.0, fixed_layers: int = 2,
                    lattice_constant: float = LI_LATTICE_CONSTANT_MD) -> Atoms:
    """(100) slab with a surface morphology carved along x (self-healing study §1).

    * ``flat``: `base_layers` layers, no feature.
    * ``trench``: rectangular trenches `feature_width` wide and `feature_depth` deep, one per period.
    * ``ridge``: triangular ridges `feature_depth` high with base `feature_width`, one per period.
    * ``groove``: inverted triangular (V) grooves `feature_depth` deep with opening `feature_width`.

    Ridges stand on `base_layers`; trenches and grooves are cut into a slab `feature_depth`
    thicker, so that the material under the feature is `base_layers` thick in every case.
    """
    kinds = ("flat", "trench", "ridge", "groove")
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds}, got {kind!r}")
    for name, value in (("feature_depth_angstrom", feature_depth_angstrom),
                        ("feature_width_angstrom", feature_width_angstrom), ("period_angstrom", period_angstrom)):
        _positive(name, value)
    if kind != "flat" and feature_width_angstrom > period_angstrom:
        raise ValueError("feature_width_angstrom must not exceed period_angstrom")
    layer_spacing = lattice_constant / 2
    extra_layers = 0 if kind == "flat" else int(round(feature_depth_angstrom / layer_spacing))
    atoms = slab((1, 0, 0), base_layers + extra_layers, size, vacuum_angstrom, fixed_layers, lattice_constant)
    if kind == "flat":
        return atoms
    if atoms.cell[0, 0] < period_angstrom:
        raise ValueError(f"the slab is {atoms.cell[0, 0]:.1f} Å long in x, shorter than period_angstrom "
                         f"{period_angstrom}: increase size[0]")
    base_top = atoms.positions[atoms.arrays["layer"] == base_layers - 1, 2].max()
    height = atoms.positions[:, 2] - base_top  # > 0 in the feature region
    x_in_period = np.mod(atoms.positions[:, 0], period_angstrom)
    offset = np.abs(x_in_period - period_angstrom / 2)  # distance from the feature's centre line
    half_width = feature_width_angstrom / 2
    if kind == "trench":
        remove = (height > 1e-6) & (offset < half_width)
    elif kind == "ridge":
        profile = feature_depth_angstrom * np.clip(1 - offset / half_width, 0, None)
        remove = height > profile + 1e-6
    else:  # groove
        profile = feature_depth_angstrom * np.clip(offset / half_width, 0, 1)
        remove = (height > profile + 1e-6) & (offset < half_width)
    keep = ~remove
    return _tag_layers(atoms[keep], fixed_layers)


def cavity_crystal(cavity_angstrom: Sequence[float] = (6.0, 6.0, 6.0), size: int | Sequence[int] = 6,
                   lattice_constant: float = LI_LATTICE_CONSTANT_MD) -> Atoms:
    """bcc crystal with a cuboid cavity (lx, ly, lz in Å) at its centre (bulk self-healing)."""
    atoms = bcc_bulk(lattice_constant, size)
    cavity = np.asarray(cavity_angstrom, dtype=float)
    if cavity.shape != (3,) or np.any(cavity <= 0):
        raise ValueError(f"cavity_angstrom must be three positive lengths, got {cavity_angstrom!r}")
    lengths = atoms.cell.lengths()
    if np.any(cavity >= lengths - lattice_constant):
        raise ValueError(f"cavity {tuple(cavity)} Å does not fit in the crystal {tuple(np.round(lengths, 2))} Å "
                         "with one lattice constant of material around it")
    inside = np.all(np.abs(atoms.positions - lengths / 2) < cavity / 2, axis=1)
    if not inside.any():
        raise ValueError("the cavity is smaller than one atomic site and would remove nothing")
    return atoms[~inside]


def column_on_substrate(shape: Literal["circular", "cuboid"] = "circular", facet: Literal["100", "110"] = "100",
                        width_angstrom: float = 12.0, height_angstrom: float = 20.0,
                        substrate_size: Sequence[int] = (8, 8), substrate_layers: int = 6,
                        fixed_layers: int = 2, vacuum_angstrom: float = 20.0,
                        lattice_constant: float = LI_LATTICE_CONSTANT_MD) -> Atoms:
    """Needle-like dendrite column on a bcc (100) substrate (dendrite morphology study §2).

    `width` is the diameter (circular) or side (cuboid). A cuboid with ``facet="100"`` has
    {100} side faces; ``"110"`` turns it 45° about z so that its side faces are {110}.
    """
    if shape not in ("circular", "cuboid"):
        raise ValueError(f"shape must be 'circular' or 'cuboid', got {shape!r}")
    if str(facet) not in ("100", "110"):
        raise ValueError(f"facet must be '100' or '110', got {facet!r}")
    _positive("width_angstrom", width_angstrom)
    _positive("height_angstrom", height_angstrom)
    column_layers = int(round(height_angstrom / (lattice_constant / 2)))
    atoms = slab((1, 0, 0), substrate_layers + column_layers, substrate_size, vacuum_angstrom,
                 fixed_layers, lattice_constant)
    lx, ly = atoms.cell[0, 0], atoms.cell[1, 1]
    if width_angstrom > min(lx, ly) - lattice_constant:
        raise ValueError(f"width_angstrom {width_angstrom} does not fit on a substrate of {lx:.1f} x {ly:.1f} Å")
    in_column_height = atoms.arrays["layer"] >= substrate_layers
    d = atoms.positions[:, :2] - np.array([lx / 2, ly / 2])
    if shape == "circular":
        inside = np.hypot(d[:, 0], d[:, 1]) <= width_angstrom / 2
    else:
        if str(facet) == "110":
            c = np.sqrt(0.5)
            d = np.stack([c * (d[:, 0] + d[:, 1]), c * (d[:, 1] - d[:, 0])], axis=1)
        inside = np.all(np.abs(d) <= width_angstrom / 2, axis=1)
    keep = ~in_column_height | inside
    return _tag_layers(atoms[keep], fixed_layers)


def random_cluster(n_atoms: int = 500, density_g_cm3: float = 0.0534, seed: int = 0,
                   min_distance_angstrom: float = 2.2, element: str = "Li") -> Atoms:
    """`n_atoms` atoms placed at random in a periodic cubic box of the given mass density.

    Positions are drawn uniformly, rejecting any closer than `min_distance_angstrom` to an
    already placed atom (periodic images included), as in the glassy-nucleation study §5.
    """
    if n_atoms < 1:
        raise ValueError(f"n_atoms must be >= 1, got {n_atoms}")
    _positive("density_g_cm3", density_g_cm3)
    mass_g = n_atoms * atomic_masses[atomic_numbers[element]] / AVOGADRO
    length = (mass_g / density_g_cm3) ** (1 / 3) * 1e8  # cm -> Å
    if (4 / 3) * np.pi * (min_distance_angstrom / 2) ** 3 * n_atoms > 0.5 * length ** 3:
        raise ValueError(f"{n_atoms} atoms at {density_g_cm3} g/cm^3 cannot keep {min_distance_angstrom} Å apart")
    rng = np.random.default_rng(seed)
    positions = np.empty((n_atoms, 3))
    placed, attempts = 0, 0
    while placed < n_atoms:
        attempts += 1
        if attempts > 1000 * n_atoms:
            raise ValueError("could not place the atoms; lower min_distance_angstrom or the density")
        trial = rng.uniform(0, length, 3)
        if placed:
            d = positions[:placed] - trial
            d -= length * np.round(d / length)
            if np.min(np.einsum("ij,ij->i", d, d)) < min_distance_angstrom ** 2:
                continue
        positions[placed] = trial
        placed += 1
    return Atoms(element * n_atoms, positions=positions, cell=[length] * 3, pbc=True)


def adatom_slab(miller: Sequence[int] | str = (1, 0, 0), site: str = "hollow", layers: int = 5,
                size: Sequence[int] = (2, 2), vacuum_angstrom: float = 12.0, height_angstrom: float = 1.5,
                fixed_layers: int = 0, lattice_constant: float = LI_LATTICE_CONSTANT_MD) -> Atoms:
    """Slab with one Li adatom `height` above the top layer at an ASE site (ontop, bridge, hollow...)."""
    from ase.build import add_adsorbate

    atoms = slab(miller, layers, size, vacuum_angstrom, fixed_layers, lattice_constant)
    sites = atoms.info.get("adsorbate_info", {}).get("sites", {})
    if site not in sites:
        raise ValueError(f"site must be one of {sorted(sites)} for this surface, got {site!r}")
    constraint, layer, fixed = atoms.constraints, atoms.arrays["layer"], atoms.arrays["fixed"]
    atoms.set_constraint()
    add_adsorbate(atoms, "Li", height_angstrom, site)
    atoms.set_array("layer", np.append(layer, layer.max() + 1))
    atoms.set_array("fixed", np.append(fixed, False))
    atoms.set_constraint(constraint)
    return atoms


ARGYRODITE_LATTICE_CONSTANT = 9.85  # Li6PS5Cl, Å


def argyrodite_cell(lattice_constant: float = ARGYRODITE_LATTICE_CONSTANT, seed: int = 0) -> Atoms:
    """Ordered cubic Li6PS5Cl (F-43m, 4 formula units, 52 atoms) for the interface study (§4).

    P on 4b, the PS4 sulfur on 16e (x = 0.619), the free S on 4c, Cl on 4a; Li on half of the
    48h sites (x = 0.183, z = 0.024): the sites come in pairs 1.87 Å apart of which the real
    crystal fills one at random; `seed` picks one of each pair (nearest Li-Li then 2.2 Å).
    """
    from ase.geometry import get_distances
    from ase.spacegroup import crystal

    _positive("lattice_constant", lattice_constant)
    cell = [lattice_constant] * 3 + [90, 90, 90]
    frame = crystal(["P", "S", "S", "Cl"], basis=[(0.5, 0.5, 0.5), (0.619, 0.619, 0.619), (0.25, 0.25, 0.25),
                                                  (0, 0, 0)], spacegroup=216, cellpar=cell)
    sites = crystal(["Li"], basis=[(0.183, 0.183, 0.024)], spacegroup=216, cellpar=cell)
    distances = get_distances(sites.positions, cell=sites.cell, pbc=True)[1]
    np.fill_diagonal(distances, np.inf)
    partner = distances.argmin(axis=1)
    pairs = sorted({tuple(sorted((i, int(partner[i])))) for i in range(len(sites))})
    rng = np.random.default_rng(seed)
    chosen = [pair[int(rng.integers(2))] for pair in pairs]
    return sites[chosen] + frame


def lithium_electrolyte_interface(electrolyte_cells: Sequence[int] = (1, 1, 1), lithium_cells: int = 3,
                                  lithium_layers: int = 8, gap_angstrom: float = 2.5,
                                  lattice_constant: float = ARGYRODITE_LATTICE_CONSTANT) -> Atoms:
    """Li | Li6PS5Cl | Li: a bcc Li (100) slab on each side of an argyrodite block, periodic in z.

    The per-atom array ``region`` says where each atom belongs: ``lithium_lower`` (the slab
    below the electrolyte), ``electrolyte``, ``lithium_upper``; restraints select by it.

    The Li slab has `lithium_cells` x `lithium_cells` conventional cells per electrolyte cell,
    strained in-plane to the electrolyte's width (`info["lithium_inplane_strain"]`: 3 cells
    of 3.51 Å on 9.85 Å is -6.5 %); the Li spacing along z keeps bulk bcc Li's 1.755 Å.
    """
    electrolyte = argyrodite_cell(lattice_constant).repeat(_repeat(electrolyte_cells, "electrolyte_cells"))
    lx, ly, lz = electrolyte.cell.lengths()
    n_x, n_y = lithium_cells * electrolyte_cells[0], lithium_cells * electrolyte_cells[1]
    lithium = slab((1, 0, 0), lithium_layers, (n_x, n_y), 0.0, 0, LI_LATTICE_CONSTANT_MD)
    strain = lx / (n_x * LI_LATTICE_CONSTANT_MD) - 1
    lithium.set_cell([lx, ly, lithium.cell[2, 2]], scale_atoms=False)
    lithium.positions[:, :2] *= 1 + strain
    half = lithium_layers // 2
    layer = lithium.arrays["layer"]
    bottom, top = lithium[layer < half], lithium[layer >= half]
    top.positions[:, 2] -= top.positions[:, 2].min()
    bottom.positions[:, 2] -= bottom.positions[:, 2].min()
    thickness_top = top.positions[:, 2].max()
    thickness_bottom = bottom.positions[:, 2].max()
    electrolyte.positions[:, 2] += thickness_top + gap_angstrom
    bottom.positions[:, 2] += thickness_top + 2 * gap_angstrom + lz
    interface = top + electrolyte + bottom
    height = thickness_top + thickness_bottom + 2 * gap_angstrom + lz + LI_LATTICE_CONSTANT_MD / 2
    interface.set_cell([lx, ly, height])
    interface.pbc = True
    for name in list(interface.arrays):
        if name not in ("numbers", "positions"):
            del interface.arrays[name]
    interface.set_array("region", np.array(["lithium_lower"] * len(top) + ["electrolyte"] * len(electrolyte)
                                           + ["lithium_upper"] * len(bottom), dtype=object))
    interface.info = {"lithium_inplane_strain": float(strain)}
    return interface


def cut_out(atoms: Atoms, center_indices: Sequence[int], radius_angstrom: float,
            shape: Literal["sphere", "cuboid"] = "sphere", vacuum_angstrom: float = 6.0) -> Atoms:
    """Local region of a large structure around `center_indices`, as a small cell for DFT.

    Atoms within `radius` (sphere) or within a cube of half-side `radius` of any centre atom
    (minimum-image distances) are kept, unwrapped around the first centre and placed in a
    non-periodic box padded by `vacuum` on every side. `info["source_indices"]` records where
    each atom came from, so labels can be traced to the frame (large-structure active learning, §2).
    """
    _positive("radius_angstrom", radius_angstrom)
    if shape not in ("sphere", "cuboid"):
        raise ValueError(f"shape must be 'sphere' or 'cuboid', got {shape!r}")
    centers = [int(i) for i in center_indices]
    if not centers or any(not 0 <= i < len(atoms) for i in centers):
        raise ValueError(f"center_indices must be indices in [0, {len(atoms)})")
    reference = atoms.positions[centers[0]]
    vectors = atoms.positions - reference
    if atoms.pbc.any():
        from ase.geometry import find_mic

        vectors, _ = find_mic(vectors, atoms.cell, atoms.pbc)
    keep = np.zeros(len(atoms), dtype=bool)
    for c in centers:
        d = vectors - vectors[c]
        keep |= (np.linalg.norm(d, axis=1) <= radius_angstrom) if shape == "sphere" else np.all(
            np.abs(d) <= radius_angstrom, axis=1)
    positions = vectors[keep]
    positions -= positions.min(axis=0) - vacuum_angstrom
    cell = positions.max(axis=0) + vacuum_angstrom
    region = Atoms(atoms.symbols[keep], positions=positions, cell=np.diag(cell), pbc=False)
    region.info["source_indices"] = np.flatnonzero(keep).tolist()
    return region


def write_structure(atoms: Atoms, path: str | Path) -> Path:
    """Write extended XYZ (keeps `layer`, `fixed` and info); returns the path.

    Written under a temporary name and renamed, so a reader (or a task hashing the file for
    its id) never sees half a structure, even if the writer is killed.
    """
    from ase.io import write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atoms = atoms.copy()
    atoms.info.pop("adsorbate_info", None)  # ASE's site table: not storable in extxyz, rebuilt on demand
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary, atoms, format="extxyz")
    temporary.replace(path)
    return path


def holds_structure(path: str | Path, atoms: Atoms, tolerance_angstrom: float = 1e-6) -> bool:
    """Whether `path` (written by `write_structure`) holds `atoms`: the same elements, periodicity,
    constraints and per-atom arrays, cell and positions within `tolerance_angstrom`, whatever
    number format wrote it."""
    from ase.io import read

    path = Path(path)
    if not path.exists():
        return False
    stored = read(path, format="extxyz")
    if len(stored) != len(atoms) or not np.array_equal(stored.numbers, atoms.numbers) \
            or not np.array_equal(stored.pbc, atoms.pbc):
        return False
    close = partial(np.allclose, rtol=0, atol=tolerance_angstrom)
    if not (close(stored.cell.array, atoms.cell.array) and close(stored.positions, atoms.positions)):
        return False
    if [c.todict() for c in stored.constraints] != [c.todict() for c in atoms.constraints]:
        return False
    names = set(atoms.arrays) - {"numbers", "positions"}
    return names == set(stored.arrays) - {"numbers", "positions"} and all(
        np.array_equal(stored.arrays[name], atoms.arrays[name]) if atoms.arrays[name].dtype.kind in "bUSO"
        else close(stored.arrays[name], atoms.arrays[name]) for name in names)


def _cells(size: int | Sequence[int]) -> int:
    return int(np.prod(_repeat(size)))


def _slab_atoms(layers: int, size: Sequence[int]) -> int:
    """Upper bound: ASE's bcc slabs hold at most two atoms per layer and surface cell."""
    return 2 * int(layers) * int(size[0]) * int(size[1])


def _interface_atoms(p: dict[str, Any]) -> int:
    cells = p.get("electrolyte_cells", (1, 1, 1))
    li = p.get("lithium_cells", 3)
    return 52 * _cells(cells) + int(p.get("lithium_layers", 8)) * li * int(cells[0]) * li * int(cells[1])


class Builder:
    """A structure builder plug-in: the function, its parameter model (from its signature,
    typed by its annotations) and an estimate of the atoms it makes, checked before building."""

    def __init__(self, name: str, function: Callable[..., Atoms], estimate: Callable[[dict[str, Any]], int]):
        from pydantic import create_model

        self.name, self.function, self._estimate = name, function, estimate
        hints = typing.get_type_hints(function)
        fields: dict[str, Any] = {}
        for parameter in inspect.signature(function).parameters.values():
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            fields[parameter.name] = (hints.get(parameter.name, Any), default)
        self.Params = create_model(f"{function.__name__}_params", __base__=Params, **fields)
        self.__doc__ = function.__doc__

    def __call__(self, **params: Any) -> Atoms:
        return self.function(**params)

    def estimate_atoms(self, params: dict[str, Any]) -> int:
        """About how many atoms `params` make (an upper bound for slabs), without building them."""
        defaults = {n: f.default for n, f in self.Params.model_fields.items() if not f.is_required()}
        return int(self._estimate({**defaults, **params}))


#: Above this many atoms a structure is refused before it is built (validation builds every
#: system to find structures that cannot be built and systems that build the same atoms).
MAX_ATOMS = 2_000_000


def _register(name: str, function: Callable[..., Atoms], estimate: Callable[[dict[str, Any]], int]) -> None:
    BUILDERS.register(Builder(name, function, estimate))


#: Builders that make a structure from scalar parameters: what `systems[].builder` may name.
BUILDERS: Registry[Builder] = Registry("builder")
_register("bulk", bcc_bulk, lambda p: 2 * _cells(p["size"]))
_register("strained_bulk", strained_bulk, lambda p: 2 * _cells(p["size"]))
_register("close_packed", close_packed, lambda p: 4 * _cells(p["size"]))
_register("bain_path", bain_path, lambda p: 2 * _cells(p["size"]))
_register("vacancy", vacancy, lambda p: 2 * _cells(p["size"]) - 1)
_register("interstitial", interstitial, lambda p: 2 * _cells(p["size"]) + 1)
_register("slab", slab, lambda p: _slab_atoms(p["layers"], p["size"]))
_register("morphology_slab", morphology_slab, lambda p: _slab_atoms(
    p["base_layers"] + p["feature_depth_angstrom"] / (p["lattice_constant"] / 2) + 1, p["size"]))
_register("cavity_crystal", cavity_crystal, lambda p: 2 * _cells(p["size"]))
_register("column_on_substrate", column_on_substrate, lambda p: _slab_atoms(
    p["substrate_layers"] + p["height_angstrom"] / (p["lattice_constant"] / 2) + 1, p["substrate_size"]))
_register("random_cluster", random_cluster, lambda p: int(p["n_atoms"]))
_register("adatom_slab", adatom_slab, lambda p: _slab_atoms(p["layers"], p["size"]) + 1)
_register("argyrodite_cell", argyrodite_cell, lambda p: 52)
_register("lithium_electrolyte_interface", lithium_electrolyte_interface, _interface_atoms)
