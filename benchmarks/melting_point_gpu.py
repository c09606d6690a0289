"""The melting point of each member of an ensemble at the acceptance's size, on one GPU.

The `melting_point` property's own runs and rule (`tasks.properties.melting`), with one
process per (member, temperature): one 2,048-atom LAMMPS leaves a GPU mostly idle between its
kernels, so several run side by side. `runs.json` is rewritten as each run lands (a time limit
loses only the runs in flight); each member's melting point then follows from its runs by
`melting_point_result`, the property's own rule, into `melting_points.json`.

    python benchmarks/melting_point_gpu.py data/li-gpaw/models OUT --processes 16
    python benchmarks/melting_point_gpu.py data/li-gpaw/models OUT --combine   # from OUT/runs.json

The campaign's `properties` stage runs the same property one task per (property, member),
its temperatures one after the other; this script is for a machine with one GPU and many
cores (lab notes: `benchmarks/README.md`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.atomic import write_json  # noqa: E402
from tasks.runtime import prepare_process  # noqa: E402

# before torch and Numba load, here and in each spawned run: unpinned, a-CNA's OpenMP team of
# Numba threads slowed the 256-atom runs several times over on a CPU (none landed in 57 minutes)
prepare_process()

from tasks.properties.melting import CoexistenceRun, MeltingParams, coexistence_run, melting_point_result  # noqa: E402


def one_run(params: dict, lattice_constant: float, temperature: float, pair_commands: list[str]) -> dict:
    started = time.perf_counter()
    run = coexistence_run(MeltingParams(**params), lattice_constant, temperature, pair_commands)
    return {"temperature_k": run.temperature_k, "crystal_bcc": run.crystal_bcc, "times_ps": run.times_ps.tolist(),
            "bcc_fractions": run.bcc_fractions.tolist(), "temperatures_k": run.temperatures_k.tolist(),
            "wall_time_s": time.perf_counter() - started}


def prepare_member(model: Path, params: MeltingParams, work_dir: Path) -> dict:
    """The member's compressed model for MD and its 0 K lattice constant (the box's start)."""
    from tasks.properties.calculators import PropertyPotential

    potential = PropertyPotential(model.stem, "deepmd", str(model))
    md_model = potential.md_model(work_dir)
    return {"member": model.stem, "md_model": md_model, "pair_commands": potential.pair_commands(md_model),
            "lattice_constant_angstrom": params.lattice_constant(potential.calculators(work_dir))}


def combine(params: MeltingParams, runs: dict) -> dict:
    """Each member's melting point from its runs, or why there is none."""
    found = {}
    for member, by_temperature in sorted(runs.items()):
        missing = [t for t in params.temperatures_k if f"{t:g}" not in by_temperature]
        if missing:
            found[member] = {"error": f"no run at {missing} K"}
            continue
        landed = [CoexistenceRun(t, by_temperature[f"{t:g}"]["crystal_bcc"],
                                 np.array(by_temperature[f"{t:g}"]["times_ps"]),
                                 np.array(by_temperature[f"{t:g}"]["bcc_fractions"]),
                                 np.array(by_temperature[f"{t:g}"]["temperatures_k"])
                                 if "temperatures_k" in by_temperature[f"{t:g}"] else None)
                  for t in params.temperatures_k]
        rates = {f"{run.temperature_k:g}": run.growth_rate for run in landed}
        try:
            value = melting_point_result(params, landed).values[0]
            found[member] = {"melting_point_k": value.value, "uncertainty_k": value.uncertainty,
                             "note": value.note, "growth_rates_per_ps": rates}
        except ValueError as refused:
            found[member] = {"error": str(refused), "growth_rates_per_ps": rates}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, help="a folder of frozen members (member-*.pth)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--cells", type=int, nargs=3, default=(8, 8, 16), help="2,048 atoms by default")
    parser.add_argument("--method", choices=["interface_velocity", "nph"], default="interface_velocity")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[410.0, 430.0, 450.0, 470.0],
                        help="K: fixed temperatures, or each NPH run's start")
    parser.add_argument("--equilibrate-ps", type=float, default=3.0)
    parser.add_argument("--melt-ps", type=float, default=3.0)
    parser.add_argument("--cool-ps", type=float, default=1.0)
    parser.add_argument("--coexistence-ps", type=float, default=15.0)
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--combine", action="store_true", help="only recompute melting_points.json from runs.json")
    args = parser.parse_args()

    params = MeltingParams(method=args.method, temperatures_k=args.temperatures, cells=tuple(args.cells),
                           equilibrate_ps=args.equilibrate_ps,
                           melt_ps=args.melt_ps, cool_ps=args.cool_ps, coexistence_ps=args.coexistence_ps)
    args.out.mkdir(parents=True, exist_ok=True)
    runs_file = args.out / "runs.json"
    if args.combine:
        runs = json.loads(runs_file.read_text())["runs"]
    else:
        started = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix="melting-gpu-"))
        models = sorted(args.models.glob("member-*.pth"))
        with ProcessPoolExecutor(args.processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            # side by side too: one member's compression and EOS took 33 s on a GPU machine
            members = list(pool.map(prepare_member, models, [params] * len(models),
                                    [work / model.stem for model in models]))
            prepared_s = time.perf_counter() - started
            print(f"{len(members)} members compressed and relaxed in {prepared_s:.0f} s: "
                  + ", ".join(f"{m['member']} a0 {m['lattice_constant_angstrom']:.4f} Å, MD with "
                              f"{Path(m['md_model']).name}" for m in members), flush=True)
            runs: dict[str, dict] = {m["member"]: {} for m in members}
            record = {"params": params.model_dump(), "processes": args.processes, "prepare_s": prepared_s,
                      "members": {m["member"]: m["lattice_constant_angstrom"] for m in members}, "runs": runs}
            pending = {pool.submit(one_run, params.model_dump(), m["lattice_constant_angstrom"], t,
                                   m["pair_commands"]): (m["member"], t) for t in params.temperatures_k for m in members}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    member, temperature = pending.pop(future)
                    try:
                        runs[member][f"{temperature:g}"] = future.result()
                    except Exception as failed:  # a failed run is recorded, the others go on
                        runs[member][f"{temperature:g}"] = {"error": repr(failed)}
                    record["elapsed_s"] = time.perf_counter() - started
                    write_json(runs_file, record)
                    print(f"{record['elapsed_s']:.0f} s: {member} at {temperature:g} K landed", flush=True)
    found = combine(params, {member: {t: run for t, run in by_t.items() if "error" not in run}
                             for member, by_t in runs.items()})
    write_json(args.out / "melting_points.json", found)
    print(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
