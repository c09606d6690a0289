"""Structure builders: counts, tags, volumes and densities checked numerically."""

import numpy as np
import pytest
from ase.data import atomic_masses

from tasks import build


def test_bulk_counts_and_lattice():
    atoms = build.bcc_bulk(3.51, 4)
    assert len(atoms) == 2 * 4 ** 3
    assert np.allclose(atoms.cell.lengths(), 4 * 3.51)


def test_vacancy_and_interstitial():
    assert len(build.vacancy(3.5, 2)) == 15
    atoms = build.interstitial(3.5, 2, "octahedral")
    assert len(atoms) == 17
    d = atoms.get_distances(16, range(16), mic=True)
    assert d.min() == pytest.approx(3.5 / 2, abs=1e-9)


def test_strain_changes_volume():
    atoms = build.strained_bulk(volume_scale=1.1, strain_voigt=(0.01, 0, 0, 0, 0, 0), lattice_constant=3.5)
    assert atoms.get_volume() == pytest.approx(3.5 ** 3 * 1.1 * 1.01)


def _nearest_shell(atoms, index=0):
    """Nearest-neighbour distance and count of atom `index`, periodic images included."""
    from ase.neighborlist import neighbor_list

    i, d = neighbor_list("id", atoms, 4.0)
    d = np.sort(d[i == index])
    return d[0], int(np.sum(np.isclose(d, d[0], atol=1e-6)))


@pytest.mark.parametrize("stacking", ["fcc", "hcp"])
def test_close_packed_has_twelve_neighbours_at_the_bcc_atomic_volume(stacking):
    atoms = build.close_packed(stacking, volume_scale=1.05, lattice_constant=3.44, size=2)
    assert len(atoms) == build.BUILDERS["close_packed"].estimate_atoms({"size": 2}) == 32
    assert atoms.get_volume() / len(atoms) == pytest.approx(3.44 ** 3 / 2 * 1.05)
    distance, count = _nearest_shell(atoms)
    assert count == 12
    assert distance == pytest.approx((np.sqrt(2) * 3.44 ** 3 / 2 * 1.05) ** (1 / 3))  # close packing: V = d³/√2


def test_bain_path_runs_from_bcc_to_fcc():
    bcc = build.bain_path(1.0, lattice_constant=3.44, size=2)
    assert np.allclose(bcc.cell.lengths(), 2 * 3.44)
    assert _nearest_shell(bcc) == (pytest.approx(3.44 * np.sqrt(3) / 2), 8)
    fcc = build.bain_path(np.sqrt(2), lattice_constant=3.44, size=2)
    assert fcc.get_volume() == pytest.approx(bcc.get_volume())
    assert _nearest_shell(fcc) == (pytest.approx(_nearest_shell(build.close_packed("fcc", lattice_constant=3.44))[0]), 12)
    with pytest.raises(ValueError, match="c_over_a"):
        build.bain_path(0.0)


@pytest.mark.parametrize("miller", [(1, 0, 0), (1, 1, 0), (1, 1, 1)])
def test_slab_layers_and_fixed(miller):
    atoms = build.slab(miller, layers=6, size=(3, 4), vacuum_angstrom=20, fixed_layers=2)
    atoms_per_layer = 12
    assert len(atoms) == 6 * atoms_per_layer
    layers = atoms.arrays["layer"]
    assert layers.max() == 5
    fixed = atoms.arrays["fixed"]
    assert fixed.sum() == 2 * atoms_per_layer
    assert atoms.positions[fixed, 2].max() < atoms.positions[~fixed, 2].min()
    assert len(atoms.constraints[0].index) == fixed.sum()


def test_slab_general_miller():
    atoms = build.slab((2, 1, 0), layers=4, size=(1, 1))
    assert len(atoms) > 0 and atoms.arrays["layer"].max() >= 1


def test_slab_rejects_bad_parameters():
    with pytest.raises(ValueError, match="layers"):
        build.slab(layers=-1)
    with pytest.raises(ValueError, match="fixed_layers"):
        build.slab(layers=3, fixed_layers=3)


@pytest.mark.parametrize("kind", ["trench", "ridge", "groove"])
def test_morphologies_remove_material_in_the_feature(kind):
    flat = build.morphology_slab("flat", base_layers=6, size=(8, 2))
    carved = build.morphology_slab(kind, base_layers=6, feature_depth_angstrom=7.0, feature_width_angstrom=14.0,
                                   period_angstrom=28.0, size=(8, 2))
    assert len(carved) > len(flat)  # feature layers are above the flat base
    z_top = carved.positions[:, 2].max()
    top = carved.positions[:, 2] > z_top - 0.1
    x = np.mod(carved.positions[top, 0], 28.0)
    centre = np.abs(x - 14.0) < 3
    if kind == "ridge":
        assert centre.all()  # the apex of the ridge is at the centre line
    else:
        assert not centre.any()  # trenches and grooves are open at the centre line


def test_cavity_volume():
    full = build.bcc_bulk(3.5, 6)
    holed = build.cavity_crystal((7.0, 7.0, 7.0), 6, 3.5)
    removed = len(full) - len(holed)
    # Lattice sites inside a 7 Å cube: between the counts of cubes one lattice constant smaller and larger.
    assert 2 * ((7.0 - 3.5) / 3.5) ** 3 <= removed <= 2 * ((7.0 + 3.5) / 3.5) ** 3
    centre = holed.cell.lengths() / 2
    assert np.all(np.max(np.abs(holed.positions - centre), axis=1) >= 3.5 - 1e-9)  # nothing left inside
    with pytest.raises(ValueError, match="does not fit"):
        build.cavity_crystal((30.0, 5.0, 5.0), 6, 3.5)


def test_random_cluster_density():
    atoms = build.random_cluster(200, 0.0534, seed=1)
    mass_g = 200 * atomic_masses[3] / build.AVOGADRO
    density = mass_g / (atoms.get_volume() * 1e-24)
    assert density == pytest.approx(0.0534, rel=1e-9)
    assert atoms.get_all_distances(mic=True)[np.triu_indices(200, 1)].min() >= 2.2
    with pytest.raises(ValueError, match="density"):
        build.random_cluster(10, 0)


@pytest.mark.parametrize("shape,facet", [("circular", "100"), ("cuboid", "100"), ("cuboid", "110")])
def test_column_stands_on_substrate(shape, facet):
    atoms = build.column_on_substrate(shape, facet, width_angstrom=10.0, height_angstrom=14.0,
                                      substrate_size=(8, 8), substrate_layers=4)
    layer = atoms.arrays["layer"]
    column = layer >= 4
    assert column.sum() > 0
    centre = atoms.cell.lengths()[:2] / 2
    radial = np.hypot(*(atoms.positions[column, :2] - centre).T)
    assert radial.max() <= 10.0 / 2 * np.sqrt(2) + 1e-6
    assert (layer < 4).sum() == 4 * 64  # a bcc (100) layer has one atom per a x a


def test_adatom_on_top():
    atoms = build.adatom_slab((1, 0, 0), "hollow", layers=4, size=(2, 2))
    assert len(atoms) == 4 * 4 + 1
    assert atoms.positions[-1, 2] == pytest.approx(atoms.positions[:-1, 2].max() + 1.5)


def test_cut_out_keeps_neighbourhood_across_boundary():
    atoms = build.bcc_bulk(3.5, 5)
    region = build.cut_out(atoms, [0], radius_angstrom=3.1)
    assert len(region) == 1 + 8  # the centre and its first shell (3.03 Å); the second is at 3.5 Å
    assert not region.pbc.any()
    assert 0 in region.info["source_indices"]


def test_argyrodite_and_interface_are_stoichiometric_and_not_overlapping():
    from ase.geometry import get_distances

    cell = build.argyrodite_cell()
    assert cell.get_chemical_formula() == "Cl4Li24P4S20" and abs(cell.get_volume() - 9.85 ** 3) < 1e-6
    interface = build.lithium_electrolyte_interface(lithium_layers=6)
    counts = {s: interface.get_chemical_symbols().count(s) for s in ("Li", "P", "S", "Cl")}
    assert counts == {"Li": 24 + 6 * 9, "P": 4, "S": 20, "Cl": 4}
    distances = get_distances(interface.positions, cell=interface.cell, pbc=True)[1]
    distances[np.diag_indices(len(interface))] = np.inf
    assert distances.min() > 1.9  # P-S bonds are the shortest (2.03 Å)
    assert interface.info["lithium_inplane_strain"] == pytest.approx(9.85 / (3 * 3.51) - 1)
