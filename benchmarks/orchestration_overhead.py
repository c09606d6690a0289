"""No-op tasks (5,000 by default; 50,000 at scale) through our engine against bare Parsl HTEX.

Both sides use the same HighThroughputExecutor configuration (same workers, same provider)
and the same task function; ours adds what a campaign needs: a content-addressed ledger
row per task (registered, running, done; written in groups), the check for outputs found on
disk (one directory listing per parent) and a verification of each completion.
Prints tasks/s of each side and the ratio ours/bare (target >= 0.9).

Usage: python benchmarks/orchestration_overhead.py [--tasks 5000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import parsl
from parsl import python_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from campaign.config import ExecutorSection  # noqa: E402
from campaign.engine import TaskSpec, run_stage  # noqa: E402
from campaign.executors import make_parsl_config  # noqa: E402
from campaign.ledger import Ledger  # noqa: E402
from orchestration_tasks import no_op  # noqa: E402


def verify_no_op(output_dir: Path) -> dict:
    """A no-op task has no files to check: its output is that it ran (the directory exists)."""
    return {"done": True}


def bare(n: int) -> float:
    app = python_app(no_op, executors=["cpu"])
    started = time.perf_counter()
    futures = [app(index=i) for i in range(n)]
    for future in futures:
        future.result()
    return time.perf_counter() - started


def ours(n: int, work: Path) -> float:
    specs = [TaskSpec(f"noop-{i:06d}", "no_op", f"noop{i}", "cpu", no_op, {"index": i}, work / "tasks" / f"{i:06d}",
                      verify_no_op, {"index": i}) for i in range(n)]
    started = time.perf_counter()
    with Ledger(work / "ledger.sqlite") as ledger:
        result = run_stage("noop", specs, ledger)
    elapsed = time.perf_counter() - started
    assert result.ran == n and not result.failed
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="rounds of both sides, each side first in every "
                                                                "other round; best of each")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent),
                                                os.environ.get("PYTHONPATH", "")])
    work = Path(tempfile.mkdtemp(prefix="orchestration-"))
    try:
        parsl.load(make_parsl_config({"cpu": ExecutorSection(max_workers=args.workers)}, work / "parsl"))
        bare(200)  # warm up: workers started and connected before timing either side
        times: dict[str, list[float]] = {"bare": [], "ours": []}
        for round_index in range(args.rounds):
            round_dir = work / f"round{round_index}"
            # each side goes first in every other round: the first timing after a pause runs fast
            for side in ("bare", "ours") if round_index % 2 == 0 else ("ours", "bare"):
                times[side].append(bare(args.tasks) if side == "bare" else ours(args.tasks, round_dir))
            shutil.rmtree(round_dir)
        parsl.dfk().cleanup()
        parsl.clear()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bare_rate = args.tasks / min(times["bare"])
    our_rate = args.tasks / min(times["ours"])
    print(f"{args.tasks} no-op tasks, {args.workers} HTEX workers (best of {args.rounds} alternating rounds)")
    print("  rounds, tasks/s: bare " + " ".join(f"{args.tasks / t:.0f}" for t in times["bare"])
          + "; ours " + " ".join(f"{args.tasks / t:.0f}" for t in times["ours"]))
    print(f"  bare Parsl HTEX : {bare_rate:8.0f} tasks/s")
    print(f"  ours (ledger)   : {our_rate:8.0f} tasks/s")
    print(f"  ratio ours/bare : {our_rate / bare_rate:.2f}  (target >= 0.9); median of the rounds' ratios "
          f"{np.median(np.array(times['bare']) / np.array(times['ours'])):.2f}")


if __name__ == "__main__":
    main()
