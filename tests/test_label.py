"""Labelling with GPAW (real DFT), the SNAP reference oracle, and the VASP/QE adapters' inputs."""

import shutil
from pathlib import Path

import dpdata
import numpy as np
import pytest

from tasks import build, label
from tasks.geometry import kpoint_mesh, vacuum_axes
from tasks.labellers import LABELLERS, ExternalDftSettings
from tasks.labellers.gpaw import GpawSettings


def gpaw_settings(**changes):
    return {**GpawSettings(kpoint_density_per_angstrom=2.0).model_dump(), **changes}


def test_gpaw_labels_two_and_eight_atom_cells(tmp_path):
    two = build.rattled(build.bcc_bulk(3.43, 1), 0.05, 1)
    eight = build.rattled(build.bcc_bulk(3.43, (2, 2, 1)), 0.05, 2)
    batch = label.label_structures([two, eight], "gpaw", gpaw_settings(), tmp_path)
    assert [r.status for r in batch.records] == ["ok", "ok"]
    for record in batch.records:
        system = dpdata.LabeledSystem(record.system_dir, fmt="deepmd/npy")
        forces = system["forces"][0]
        assert np.abs(forces.sum(axis=0)).max() < 0.02  # momentum conservation, eV/Å
        assert np.abs(forces).max() > 0.01  # rattled: real forces
        assert "virials" in system.data and np.abs(system["virials"]).max() > 0
        assert system["energies"][0] == pytest.approx(record.energy_ev)
        assert system.get_natoms() == record.n_atoms
    assert (tmp_path / "records.json").exists()
    assert label.read_records(tmp_path)[1].n_atoms == 8


def test_gpaw_scf_failure_is_recorded_and_excluded(tmp_path):
    atoms = build.rattled(build.bcc_bulk(3.43, 1), 0.05, 3)
    batch = label.label_structures([atoms], "gpaw", gpaw_settings(scf_max_iterations=1), tmp_path / "bad")
    (record,) = batch.records
    assert record.status == "scf_not_converged"
    assert "KohnShamConvergenceError" in record.message
    assert batch.system_dirs == [] and record.system_dir is None
    assert not (tmp_path / "bad" / "systems").exists()


def test_reference_labeller_snap_and_meam(tmp_path):
    bulk = build.bcc_bulk(3.45, 2)
    for potential in ("snap", "snap_quadratic", "meam"):
        batch = label.label_structures([bulk], "reference", {"potential": potential}, tmp_path / potential)
        (record,) = batch.records
        assert record.status == "ok", record.message
        assert -2.0 < record.energy_ev / 16 < -1.4  # cohesive-energy scale of Li, eV/atom
        assert record.max_force_ev_per_angstrom < 1e-6  # perfect crystal


def test_slab_gets_one_kpoint_along_vacuum_and_no_virial(tmp_path):
    slab = build.slab((1, 0, 0), 4, (2, 2), vacuum_angstrom=12.0)
    assert vacuum_axes(slab) == (False, False, True)
    assert kpoint_mesh(slab, 3.0)[2] == 1
    batch = label.label_structures([slab], "reference", {"potential": "snap"}, tmp_path)
    system = dpdata.LabeledSystem(batch.system_dirs[0], fmt="deepmd/npy")
    assert "virials" not in system.data


def test_labels_read_back_as_written(tmp_path):
    """DeePMD stores −σV and sorts frames into systems; `read_labels` gives back ASE's stress."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(5)
    frames = []
    for i in range(2):
        atoms = build.rattled(build.bcc_bulk(3.44, (2, 1, 1)), 0.05, i)
        atoms.set_cell(atoms.cell.array + [[0, 0.1, 0], [0, 0, 0], [0.2, 0, 0]], scale_atoms=True)
        atoms.calc = SinglePointCalculator(atoms, energy=-7.6 + i, forces=rng.normal(size=(4, 3)),
                                           stress=rng.normal(size=6) * 1e-3)
        frames.append((f"bulk-{i}", atoms))
    cluster = Atoms("Li3", positions=[[0, 0, 0], [2.9, 0, 0], [0, 2.9, 0]], cell=[20] * 3, pbc=False)
    cluster.calc = SinglePointCalculator(cluster, energy=-3.3, forces=rng.normal(size=(3, 3)))
    where = label.write_deepmd_systems([*frames, ("cluster", cluster)], tmp_path, ["Li"])
    assert where["bulk-0"] == where["bulk-1"] != where["cluster"]
    bulk_read = label.read_labels(where["bulk-0"])
    for (_, written), read in zip(frames, bulk_read):
        assert np.allclose(read.cell.array, written.cell.array) and np.allclose(read.positions, written.positions)
        assert read.get_potential_energy() == pytest.approx(written.get_potential_energy())
        assert np.allclose(read.get_forces(), written.get_forces())
        assert np.allclose(read.get_stress(), written.get_stress(), atol=1e-12)
    (cluster_read,) = label.read_labels(where["cluster"])
    assert not cluster_read.pbc.any() and "stress" not in cluster_read.calc.results
    assert np.allclose(cluster_read.get_forces(), cluster.get_forces())


def test_elements_outside_type_map_are_rejected(tmp_path):
    from ase import Atoms

    with pytest.raises(ValueError, match="type_map"):
        label.label_structures([Atoms("Na2", positions=[[0, 0, 0], [2, 2, 2]], cell=[4] * 3, pbc=True)],
                               "reference", {"potential": "snap"}, tmp_path)
    with pytest.raises(ValueError, match="knows only"):  # the classical oracle is Li-only
        label.label_structures([Atoms("LiNa", positions=[[0, 0, 0], [2, 2, 2]], cell=[4] * 3, pbc=True)],
                               "reference", {"potential": "snap"}, tmp_path, type_map=["Li", "Na"])


def test_vasp_adapter_writes_inputs(tmp_path, monkeypatch):
    # VASP's POTCARs are licensed; a header-only file stands in so that ASE can resolve the setup name.
    potcar = tmp_path / "pp" / "potpaw_PBE" / "Li_sv" / "POTCAR"
    potcar.parent.mkdir(parents=True)
    potcar.write_text("  PAW_PBE Li_sv 10Sep2004\n 3.00000000000000000\n   TITEL  = PAW_PBE Li_sv 10Sep2004\n"
                      "   POMASS =    7.010; ZVAL   =    3.000    mass and valenz\n End of Dataset\n")
    monkeypatch.setenv("VASP_PP_PATH", str(tmp_path / "pp"))
    atoms = build.bcc_bulk(3.43, 2)
    calc = LABELLERS["vasp"].calculator(atoms, ExternalDftSettings(command="vasp_std", cutoff_ev=380), tmp_path,
                                        "vasp")
    calc.initialize(atoms)  # sorts atoms and resolves spin; POTCAR needs licensed files, not written here
    calc.write_incar(atoms, directory=str(tmp_path / "vasp"))
    calc.write_kpoints(atoms, directory=str(tmp_path / "vasp"))
    incar = (tmp_path / "vasp" / "INCAR").read_text().upper()
    assert "ENCUT = 380" in incar.replace("380.000000", "380") and "ISMEAR = 1" in incar
    kpoints = (tmp_path / "vasp" / "KPOINTS").read_text()
    assert "Gamma" in kpoints or "gamma" in kpoints.lower()


QE_DATA = Path(__file__).parent / "data" / "qe"


def qe_settings() -> dict:
    # A Troullier-Martins PBE Li pseudopotential generated with QE's own ld1.x from tests/data/qe/ld1.in.
    return ExternalDftSettings(command="pw.x", pseudopotential_dir=QE_DATA, cutoff_ev=544,
                               kpoint_density_per_angstrom=2.0,
                               extra={"pseudopotential": "Li.pbe-tm-dendrite.UPF"}).model_dump(mode="json")


def test_qe_labels_for_real_and_agrees_with_gpaw(tmp_path):
    assert shutil.which("pw.x"), "scripts/install.sh installs Debian's quantum-espresso"
    atoms = build.rattled(build.bcc_bulk(3.43, 1), 0.05, 1)
    (qe,) = label.label_structures([atoms], "qe", qe_settings(), tmp_path / "qe").records
    assert qe.status == "ok", qe.message
    (gpaw,) = label.label_structures([atoms], "gpaw", gpaw_settings(), tmp_path / "gpaw").records
    # Different pseudopotentials, same physics: forces agree, absolute energies do not (never mix them).
    assert qe.max_force_ev_per_angstrom == pytest.approx(gpaw.max_force_ev_per_angstrom, abs=0.03)
    assert qe.settings_hash != gpaw.settings_hash


def test_parse_real_qe_output():
    atoms = label.parse_external_output("qe", QE_DATA / "li2-rattled.pwo")
    assert len(atoms) == 2
    forces = atoms.get_forces()
    assert np.abs(forces.sum(axis=0)).max() < 0.01 and np.linalg.norm(forces, axis=1).max() == pytest.approx(0.253, abs=0.005)
    assert atoms.get_potential_energy() == pytest.approx(-54.797, abs=0.01)
    assert atoms.get_stress().shape == (6,)


def test_parse_incomplete_output_is_a_clear_error(tmp_path):
    partial = tmp_path / "cut.pwo"
    partial.write_text((QE_DATA / "li2-rattled.pwo").read_text()[:2000])
    with pytest.raises(ValueError, match="cut.pwo"):
        label.parse_external_output("qe", partial)


def test_qe_adapter_writes_inputs(tmp_path):
    atoms = build.slab((1, 0, 0), 4, (2, 2), 12.0)
    calc = LABELLERS["qe"].calculator(atoms, ExternalDftSettings(command="pw.x", cutoff_ev=408.17), tmp_path, "qe")
    calc.write_inputfiles(atoms, ["energy", "forces"])
    text = (tmp_path / "qe" / "espresso.pwi").read_text()
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert float(values["   ecutwfc          "]) == pytest.approx(30.0, abs=1e-3)  # 408.17 eV in Ry
    assert "tprnfor" in text and "'mv'" in text
    lines = text.splitlines()
    mesh = lines[lines.index("K_POINTS automatic") + 1].split()
    assert mesh[2] == "1"  # one k-point along the vacuum axis


def test_parse_vasp_format():
    vasp = label.parse_external_output("vasp", Path(__file__).parent / "data" / "vasp" / "li2-format-sample-vasprun.xml")
    qe = label.parse_external_output("qe", QE_DATA / "li2-rattled.pwo")
    np.testing.assert_allclose(vasp.get_forces(), qe.get_forces(), atol=1e-7)
    np.testing.assert_allclose(vasp.get_stress(), qe.get_stress(), atol=1e-7)
    assert vasp.get_potential_energy() == pytest.approx(qe.get_potential_energy(), abs=1e-6)


def test_truncated_vasprun_is_a_clear_error(tmp_path):
    text = (Path(__file__).parent / "data" / "vasp" / "li2-format-sample-vasprun.xml").read_text()
    cut = tmp_path / "vasprun.xml"
    cut.write_text(text[: text.index("<calculation>") + 30])
    with pytest.raises(ValueError, match="holds no forces|not a complete"):
        label.parse_external_output("vasp", cut)


KILLED_LABEL = """
import os, signal, sys
from ase.io import read
from tasks import label
from tasks.labellers import gpaw

gpaw.CHECKPOINT_INTERVAL_S = 0.0  # a checkpoint after every SCF step
replace, writes = os.replace, []

def replace_then_die(source, target):  # kill -9 right after the 4th checkpoint is in place
    replace(source, target)
    writes.append(target)
    if len(writes) == 4:
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace_then_die
label.label_one(read(sys.argv[1]), "gpaw", {settings!r}, gpaw.Path(sys.argv[2]), "cell")
"""


def scf_steps(log: Path) -> int:
    return int(next(line.split()[2] for line in log.read_text().splitlines() if line.startswith("Converged in")))


def test_a_killed_gpaw_label_resumes_from_its_scf_checkpoint(tmp_path):
    """kill -9 in the middle of the SCF, then the same label again: it goes on from the last
    checkpoint, agrees with an uninterrupted label to the SCF's tolerance, and leaves no
    checkpoint behind."""
    import subprocess
    import sys

    from ase.io import write

    atoms = build.rattled(build.bcc_bulk(3.43, (2, 2, 1)), 0.08, 4)
    settings = gpaw_settings()
    whole, whole_atoms = label.label_one(atoms, "gpaw", settings, tmp_path / "whole", "cell")
    write(tmp_path / "cell.extxyz", atoms)
    killed = subprocess.run([sys.executable, "-c", KILLED_LABEL.format(settings=settings), str(tmp_path / "cell.extxyz"),
                             str(tmp_path / "resumed")], cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "resumed" / "cell.gpw").is_file()

    resumed, resumed_atoms = label.label_one(atoms, "gpaw", settings, tmp_path / "resumed", "cell")
    assert resumed.status == whole.status == "ok"
    assert scf_steps(tmp_path / "resumed" / "cell.gpaw.txt") < scf_steps(tmp_path / "whole" / "cell.gpaw.txt") - 2
    assert resumed.energy_ev == pytest.approx(whole.energy_ev, abs=1e-4 * len(atoms))
    np.testing.assert_allclose(resumed_atoms.get_forces(), whole_atoms.get_forces(), atol=2e-3)
    np.testing.assert_allclose(resumed_atoms.get_stress(), whole_atoms.get_stress(), atol=1e-5)
    assert not list((tmp_path / "resumed").glob("*.gpw")) and not list((tmp_path / "whole").glob("*.gpw"))
