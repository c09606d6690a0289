"""Copy the li-seed-data campaign's outputs into data/li-seed/ and validate its ensemble against GPAW.

    python scripts/export_seed_data.py configs/li-seed-data.yaml data/li-seed

Writes
    train/<structure>/, test/<structure>/   DeePMD npy systems (the campaign's own hold-out split)
    models/member-<k>.pth, member-<k>.json   frozen models and their records (test metrics)
    validation.json                          the numbers below, and README's table

Validation (the same structures, GPAW energies from the labels against member 0 of the ensemble):
energy and force RMSE on the held-out test set (`dp test`, mean over members), the
lattice constant and bulk modulus from a Birch-Murnaghan fit to the seven unrattled bcc
cells (0.88-1.12 V0), and unrelaxed (100)/(110)/(111) surface energies
(E_slab - N E_bulk/atom) / 2A with the bulk energy of the unrattled 2-atom cell.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from campaign.config import load_config  # noqa: E402
from campaign.stages import ok_systems, split_train_test  # noqa: E402
from tasks import label  # noqa: E402

EV_PER_CUBIC_ANGSTROM_TO_GPA = 160.21766


def main(config_path: str, destination: str) -> None:
    from ase.eos import EquationOfState
    from ase.io import read

    from tasks.runtime import prepare_process

    config = load_config(config_path)
    out = Path(destination)
    workdir = config.workdir
    records = {}
    for records_file in sorted((workdir / "labels").glob("*/records.json")):
        for record in label.read_records(records_file.parent):
            records[record.name] = record
    ok = {r.system_dir: r.name for r in records.values() if r.status == "ok"}
    training, testing = split_train_test(ok_systems({"x": {"records": [r.__dict__ for r in records.values()]}}),
                                         config.train.test_fraction, workdir)
    if out.exists():
        shutil.rmtree(out)
    for part, systems in (("train", training), ("test", testing)):
        for system in systems:
            shutil.copytree(system, out / part / ok[system])
    latest: dict[str, Path] = {}  # member-<k> -> its newest record (older ones: earlier settings)
    for record_file in (workdir / "models" / "iter-000").glob("member-*/record.json"):
        key = "-".join(record_file.parent.name.split("-")[:2])
        if key not in latest or record_file.stat().st_mtime > latest[key].stat().st_mtime:
            latest[key] = record_file
    members = [latest[key] for key in sorted(latest)]
    if len(members) != config.train.ensemble_size:
        raise SystemExit(f"expected {config.train.ensemble_size} trained members in {workdir}/models/iter-000, "
                         f"found {len(members)}: run `campaign run {config_path}` first")
    metrics = []
    (out / "models").mkdir(parents=True)
    for k, record_file in enumerate(members):
        record = json.loads(record_file.read_text())
        shutil.copy(record["model_path"], out / "models" / f"member-{k}.pth")
        metrics.append(record["metrics"])
        (out / "models" / f"member-{k}.json").write_text(json.dumps(
            {key: record[key] for key in ("seed", "steps", "n_training_frames", "metrics", "wall_time_s")}, indent=1))

    prepare_process()
    from deepmd.infer import DeepPot

    model = DeepPot(str(out / "models" / "member-0.pth"))

    def model_energy(atoms) -> float:
        cell = atoms.cell.array.reshape(1, -1)
        energy, _, _ = model.eval(atoms.positions.reshape(1, -1), cell, [0] * len(atoms))
        return float(np.ravel(energy)[0])

    def base(system: str):
        return read(workdir / "structures" / system / "000.extxyz"), records[f"{system}-000"].energy_ev

    volumes, gpaw_energies, model_energies = [], [], []
    for scale in ("088", "092", "096", "100", "104", "108", "112"):
        atoms, energy = base(f"bulk2-v{scale}")
        volumes.append(atoms.get_volume() / len(atoms))
        gpaw_energies.append(energy / len(atoms))
        model_energies.append(model_energy(atoms) / len(atoms))
    eos = {}
    for name, energies in (("gpaw", gpaw_energies), ("model", model_energies)):
        fit = EquationOfState(volumes, energies, eos="birchmurnaghan")
        v0, e0, b = fit.fit()
        eos[name] = {"lattice_constant_angstrom": float((2 * v0) ** (1 / 3)),
                     "bulk_modulus_gpa": float(b * EV_PER_CUBIC_ANGSTROM_TO_GPA)}
    bulk_atoms, bulk_energy = base("bulk2-v100")
    surfaces = {}
    for facet, system in (("100", "slab100"), ("110", "slab110"), ("111", "slab111")):
        slab, slab_energy = base(system)
        area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
        n = len(slab) / len(bulk_atoms)
        surfaces[facet] = {
            "gpaw_ev_per_square_angstrom": (slab_energy - n * bulk_energy) / (2 * area),
            "model_ev_per_square_angstrom": (model_energy(slab) - n * model_energy(bulk_atoms)) / (2 * area)}
    validation = {
        "structures": {"train": len(training), "test": len(testing)},
        "test_force_rmse_ev_per_angstrom": float(np.mean([m["force_ev_per_angstrom_rmse"] for m in metrics])),
        "test_energy_rmse_mev_per_atom": float(1000 * np.mean([m["energy_per_atom_ev_rmse"] for m in metrics])),
        "equation_of_state": eos, "surface_energy_unrelaxed": surfaces,
        "note": "GPAW PBE (settings in configs/li-seed-data.yaml) vs member 0 of the ensemble; "
                "lattice constant and bulk modulus from a Birch-Murnaghan fit over 0.88-1.12 V0",
    }
    (out / "validation.json").write_text(json.dumps(validation, indent=1))
    print(json.dumps(validation, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
