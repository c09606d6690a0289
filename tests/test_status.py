"""`campaign status`: the reason shown for a failure, the ETA, the driver, the active-learning table."""

import subprocess
import sys
from pathlib import Path

from rich.console import Console

from campaign.config import parse_config
from campaign.ledger import Ledger
from campaign.status import failure_reason, print_status


def test_failure_reason_is_the_exception_line_not_the_tool_output():
    error = ("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
             "tasks.train.TrainingError: `dp --pt train input.json` exited 1 in /w:\n"
             "RuntimeError: Shared memory manager connection has timed out\n"
             "Exception raised from recv at socket.h:67 (most recent call first):\n"
             "frame #0: c10::Error::Error(c10::SourceLocation) + 0x9d\n")
    assert failure_reason(error) == "RuntimeError: Shared memory manager connection has timed out"
    assert failure_reason("ManagerLost: worker gone") == "ManagerLost: worker gone"


def _status_text(config) -> str:
    console = Console(record=True, width=200)
    assert print_status(config, console) == 0
    return console.export_text()


def test_status_shows_stages_eta_iterations_and_failures(tmp_path):
    config = parse_config({"campaign": {"name": "s", "workdir": str(tmp_path)},
                           "systems": [{"name": "b", "builder": "bulk"}]})
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.register_many([(f"t{i}", "label", "label", f"t{i}", {}) for i in range(4)])
        for i in range(2):
            ledger.mark_running(f"t{i}", "cpu")
            ledger.mark_done(f"t{i}", {}, wall_time_s=30.0)
        ledger.mark_running("t2", "cpu")
        ledger.mark_failed("t2", "ValueError: SCF not converged after 300 iterations", transient=False)
        ledger.save_iteration(0, {"iteration": 0, "exploration_runs": 3, "exploration_runs_failed": 0, "frames": 60,
                                  "accurate_ratio": 0.9, "candidate_ratio": 0.1, "failed_ratio": 0.0,
                                  "labels_added": 5, "labels_failed": 0, "force_rmse_ev_per_angstrom": 0.05,
                                  "explore_and_label_wall_time_s": 100, "train_wall_time_s": 50, "converged": None})
    text = _status_text(config)
    assert "label" in text and "stopped" in text  # no driver runs it
    assert "active learning" in text and "0.900" in text
    assert "SCF not converged" in text


def test_status_says_which_driver_runs_the_campaign_or_that_none_does(tmp_path):
    """The ledger's "running" means submitted by a driver; after a machine is lost or a driver
    is killed with -9 nothing runs them, and status must not show an ETA for them. Whether a
    driver runs is asked of its lock, held here by another process as `campaign run` holds it."""
    config = parse_config({"campaign": {"name": "s", "workdir": str(tmp_path)},
                           "systems": [{"name": "b", "builder": "bulk"}]})
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.register_many([(f"t{i}", "label", "label", f"t{i}", {}) for i in range(3)])
        ledger.mark_running("t0", "cpu")
        ledger.mark_done("t0", {}, wall_time_s=30.0)
        ledger.mark_running("t1", "cpu")
    (tmp_path / "driver.lock").write_text("`campaign run`, pid 1 on gone, since 2026-01-01 00:00:00\n")
    text = _status_text(config)
    assert "no driver runs this campaign: its 1 tasks recorded as running were left" in text, text
    assert "stopped" in text and "pid 1 on gone" not in text
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from campaign.driver import driver_lock\n"
         f"with driver_lock(Path({str(tmp_path)!r})):\n    print('held', flush=True); sys.stdin.read()"],
        cwd=Path(__file__).parents[1], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        text = _status_text(config)
    finally:
        holder.communicate("", timeout=30)
    assert f"driver: `campaign run`, pid {holder.pid} on" in text, text
    assert "0:00:30" in text  # 2 unfinished x 30 s / 2 cpu workers


def test_a_diffusion_coefficient_below_its_resolution_is_not_printed_as_a_number():
    from campaign.report import _cell

    column = "D surface (Å²/ps)"
    row = {column: 0.69, "D surface stderr": 0.01}
    assert _cell(row, column) == "0.69 ± 0.01"
    for value, error in ((0.001, 0.0006), (-0.0035, 0.0005)):  # within 2σ of zero; negative beyond it
        assert _cell({column: value, "D surface stderr": error}, column).startswith("unresolved")
