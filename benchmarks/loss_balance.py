"""What the loss prefactors buy a committed Li member: held-out errors against its elasticity.

Each run continues one member of `<data>/models` (DeePMD `--init-frz-model`, the
active-learning loop's own retraining) on `<data>/train` for `--steps` steps at constant
prefactors (energy, force, virial) and a learning rate falling from `--start-rate` to 1e-7
(and with `--scratch` members trained from no model on the config's own schedule, as
iteration 0's are, or on it with other limit prefactors, or with another network; with
`--system-weights` the labels named drawn more often, `train.system_weights`), then
reports the held-out RMSEs on `<data>/test` and the static EOS and elastic constants, beside
the member as committed and the acceptance's GPAW column. Two runs side by side, one core each.
Usage: python benchmarks/loss_balance.py [--member 0] [--prefactors 10,1,10 10,10,10 ...]
       [--scratch [10,10,10 ...]] [--fitting-neuron 240,240,240]
       [--descriptor rcut_angstrom=6.8 rcut_smooth_angstrom=5.8 'sel=[90]'] [--steps 10000]
       [--system-weights 'bulk2-v*-000=4']
       [--data data/li-gpaw] [--output benchmarks/results/loss_balance.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from campaign.config import DescriptorSection, TrainSection, load_config  # noqa: E402
from tasks.properties import run_property  # noqa: E402
from tasks.properties.calculators import deepmd_calculators  # noqa: E402
from tasks.runtime import prepare_process  # noqa: E402
from tasks.train import test_model, train_member  # noqa: E402

#: the acceptance's reference: GPAW at the labels' settings (README, "The property acceptance")
GPAW = {"bulk_modulus": 14.1, "C11": 18.4, "C12": 12.0, "C44": 11.0}
#: the continuations run when none are named
SWEEP = ["10,1,10", "10,3,10", "10,10,10", "10,30,10", "10,10,30", "10,10,100"]
#: what trained the committed members: their network
TRAINING_SET = ROOT / "configs" / "li-training-set.yaml"


def systems(data: Path, part: str) -> list[str]:
    return sorted({str(p.parent) for p in (data / part).rglob("type.raw")})


def judged(model: Path, data: Path, work_dir: Path) -> dict[str, float]:
    """Held-out RMSEs (meV/atom, meV/Å) and the static B, C11, C12, C44 (GPa) of `model`."""
    prepare_process()
    metrics = test_model(model, systems(data, "test"), work_dir / "test")
    calculators = deepmd_calculators(str(model))
    eos = run_property("eos", {}, calculators)
    elastic = run_property("elastic", {"strains": [0.005, 0.01]}, calculators)
    return {"energy_rmse_mev_per_atom": 1000 * metrics["energy_per_atom_ev_rmse"],
            "force_rmse_mev_per_angstrom": 1000 * metrics["force_ev_per_angstrom_rmse"],
            "bulk_modulus": eos.value("bulk_modulus").value,
            **{c: elastic.value(c).value for c in ("C11", "C12", "C44")}}


def descriptor_of(section: TrainSection, entries: dict[str, Any]) -> dict[str, Any]:
    """The config's first descriptor with `entries` in place of its own (`--descriptor`)."""
    return DescriptorSection.model_validate({**section.descriptor.model_dump(), **entries}).as_arguments()


def weights_suffix(system_weights: dict[str, float]) -> str:
    return "".join(f"-w-{pattern.replace('*', 'x')}-{w:g}" for pattern, w in system_weights.items())


def continued(member: int, prefactors: tuple[float, float, float], steps: int, start_rate: float,
              descriptor: dict[str, Any], system_weights: dict[str, float], data: Path,
              work_root: Path) -> dict[str, float]:
    """The committed member trained on at constant prefactors; `descriptor` must be its own
    network's entries where they differ from the config's first training."""
    prepare_process()
    e, f, v = prefactors
    work_dir = work_root / f"member-{member}-e{e:g}-f{f:g}-v{v:g}-{steps}{weights_suffix(system_weights)}"
    loss = {"start_pref_e": e, "limit_pref_e": e, "start_pref_f": f, "limit_pref_f": f,
            "start_pref_v": v, "limit_pref_v": v}
    section = load_config(TRAINING_SET).train
    network = descriptor_of(section, descriptor)
    record = train_member(work_dir, systems(data, "train"), systems(data, "test"), ["Li"], 1701 + member, steps,
                          network, section.fitting_neuron, loss,
                          init_model=data / "models" / f"member-{member}.pth",
                          start_learning_rate=start_rate, stop_learning_rate=1e-7,
                          decay_steps=max(100, steps // 40), system_weights=system_weights)
    return {"wall_time_s": record.wall_time_s, **judged(Path(record.model_path), data, work_dir)}


def from_scratch(member: int, limits: tuple[float, float, float] | None, fitting_neuron: list[int] | None,
                 descriptor: dict[str, Any], system_weights: dict[str, float], data: Path,
                 work_root: Path) -> dict[str, float]:
    """A member trained as iteration 0's are: no initial model, the config's own schedule, its
    energy, force and virial prefactors ending at `limits`, its fitting network
    `fitting_neuron` and its descriptor's entries `descriptor` where given."""
    prepare_process()
    section = load_config(TRAINING_SET).train
    network = descriptor_of(section, descriptor)
    loss = section.loss.model_dump()
    name = f"member-{member}-scratch-{section.steps}"
    if limits is not None:
        loss.update(zip(("limit_pref_e", "limit_pref_f", "limit_pref_v"), limits))
        name += "-limits-e{:g}-f{:g}-v{:g}".format(*limits)
    if fitting_neuron is not None:
        name += "-fitting-" + "x".join(map(str, fitting_neuron))
    name += "".join(f"-{key}-{str(value).replace(' ', '').strip('[]')}" for key, value in sorted(descriptor.items()))
    name += weights_suffix(system_weights)
    work_dir = work_root / name
    record = train_member(work_dir, systems(data, "train"), systems(data, "test"), ["Li"], 1701 + member,
                          section.steps, network, fitting_neuron or section.fitting_neuron, loss,
                          start_learning_rate=section.start_learning_rate,
                          stop_learning_rate=section.stop_learning_rate, decay_steps=section.decay_steps,
                          system_weights=system_weights)
    return {"wall_time_s": record.wall_time_s, **judged(Path(record.model_path), data, work_dir)}


def prefactors(text: str) -> tuple[float, float, float]:
    e, f, v = (float(x) for x in text.split(","))
    return e, f, v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--member", type=int, default=0)
    parser.add_argument("--prefactors", nargs="*",
                        help="energy,force,virial prefactors of each run (default: a sweep of six, unless "
                             "--scratch is given)")
    parser.add_argument("--scratch", nargs="*", metavar="E,F,V",
                        help="and members from scratch on the config's schedule: as it is with no values, "
                             "else one per E,F,V, its limit prefactors")
    parser.add_argument("--fitting-neuron", metavar="N,N,N",
                        help="the scratch members' fitting network (default: the config's)")
    parser.add_argument("--descriptor", nargs="*", default=[], metavar="KEY=VALUE",
                        help="descriptor entries replaced (values in JSON), e.g. rcut_angstrom=6.8 'sel=[90]': "
                             "the scratch members' network, and the continued member's own where "
                             "it differs from the config's first training")
    parser.add_argument("--system-weights", nargs="*", default=[], metavar="PATTERN=WEIGHT",
                        help="labels drawn more often, by name (fnmatch), e.g. 'bulk2-v*-000=4'")
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--start-rate", type=float, default=1e-4)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "li-gpaw",
                        help="an export: its models/, train/ and test/")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "loss-balance")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "loss_balance.json")
    args = parser.parse_args()
    args.workdir, args.data = args.workdir.resolve(), args.data.resolve()  # dp test runs in a folder of its own
    if args.prefactors is None:
        args.prefactors = [] if args.scratch is not None else SWEEP
    runs = [prefactors(p) for p in args.prefactors]
    fitting = [int(n) for n in args.fitting_neuron.split(",")] if args.fitting_neuron else None
    descriptor = {key: json.loads(value) for key, value in (entry.split("=", 1) for entry in args.descriptor)}
    weights = {pattern: float(w) for pattern, w in (entry.rsplit("=", 1) for entry in args.system_weights)}
    # spawned: no process forks a parent's torch thread pools
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {"committed": pool.submit(judged, args.data / "models" / f"member-{args.member}.pth", args.data,
                                            args.workdir / f"committed-{args.member}")}
        futures.update({"e{:g} f{:g} v{:g}".format(*p): pool.submit(continued, args.member, p, args.steps,
                                                                     args.start_rate, descriptor, weights,
                                                                     args.data, args.workdir)
                        for p in runs})
        if args.scratch == []:
            futures["from scratch"] = pool.submit(from_scratch, args.member, None, fitting, descriptor, weights,
                                                   args.data, args.workdir)
        for p in map(prefactors, args.scratch or []):
            futures["scratch to {:g},{:g},{:g}".format(*p)] = pool.submit(from_scratch, args.member, p, fitting,
                                                                            descriptor, weights, args.data,
                                                                            args.workdir)
        rows = {name: future.result() for name, future in futures.items()}
    continuations = f", {args.steps} steps from the committed model" if runs else ""
    print(f"member {args.member}{continuations}; GPAW: " + ", ".join(f"{k} {v}" for k, v in GPAW.items()))
    print(f"{'run':20} {'E meV/at':>9} {'F meV/Å':>8} {'B':>6} {'C11':>6} {'C12':>6} {'C44':>6}  seconds")
    for name, row in rows.items():
        print(f"{name:20} {row['energy_rmse_mev_per_atom']:9.2f} {row['force_rmse_mev_per_angstrom']:8.1f} "
              f"{row['bulk_modulus']:6.2f} {row['C11']:6.2f} {row['C12']:6.2f} {row['C44']:6.2f}  "
              f"{row.get('wall_time_s', 0):.0f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # steps and start_rate are the continuations' (none: only members from scratch, on the config's)
    args.output.write_text(json.dumps({"member": args.member, "steps": args.steps if runs else None,
                                       "start_rate": args.start_rate if runs else None,
                                       "fitting_neuron": fitting, "descriptor": descriptor,
                                       "system_weights": weights, "data": str(args.data),
                                       "gpaw": GPAW, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
