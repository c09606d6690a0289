"""`make quickstart` end to end on the real codes (GPAW, DeePMD-kit, LAMMPS, Parsl, Dask, Zarr),
the physical trends it must show, the resume, and the example notebook on its store."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from campaign.config import load_config
from campaign.ledger import Ledger
from campaign.report import run_summary
from campaign.run import run_campaign
from storage import open_campaign
from storage.reduce import steady_state

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """The quickstart campaign run once in a temporary workdir (the user's runs/ stay untouched)."""
    workdir = tmp_path_factory.mktemp("quickstart") / "run"
    config = load_config(ROOT / "configs" / "quickstart.yaml")
    config = config.model_copy(update={"campaign": config.campaign.model_copy(update={"workdir": workdir})})
    log = io.StringIO()  # what a batch job's log gets: no terminal
    summary = run_campaign(config, Console(file=log, width=150))
    return config, {**summary, "log": log.getvalue()}


@pytest.mark.slow
def test_a_log_without_terminal_shows_every_stage(quickstart):
    config, summary = quickstart
    lines = summary["log"].splitlines()
    with Ledger(config.workdir / "ledger.sqlite", readonly=True) as ledger:
        stages = list(ledger.counts())
    assert {"explore-0", "label-0", "train-1", "production"} <= set(stages), stages
    for stage in stages:
        progress = [line for line in lines if line.startswith(f"{stage}: ")]
        assert progress[0].startswith(f"{stage}: 0/") and "ETA" in progress[0], progress  # at its start
        assert " done " in progress[-1] and "0 failed" in progress[-1], progress  # and at its end


@pytest.mark.slow
def test_one_active_learning_iteration_labels_at_most_four(quickstart):
    config, summary = quickstart
    (record,) = summary["iterations"]
    assert record.exploration_runs == 3 and record.frames == 60
    assert 1 <= record.labels_added == record.labels_selected <= 4 and record.labels_failed == 0
    assert record.accurate_ratio < 0.99  # the committed ensemble is not yet sure of hot surfaces
    assert record.converged == "reached max_iterations (1) without converging"
    labels = open_campaign(config.workdir).labels()
    assert set(labels.engine) <= {"gpaw"} and (labels.source == "iteration:0").sum() == record.labels_added


@pytest.mark.slow
def test_deposition_trends(quickstart):
    config, _ = quickstart
    table = run_summary(config, "deposition")
    assert len(table) == 4 and set(table.status) == {"ok"}
    assert set(table.temperature) == {200, 300}  # study 000's 300 K and one more
    # atoms deposited: rate x 4 ps on the 250-atom substrate
    assert sorted(table["final atoms"].tolist()) == [258, 258, 282, 282]
    # the top of the deposit is hotter at the higher generation rate, at each temperature
    for _, rows in table.groupby("temperature"):
        low, high = rows.sort_values("rate")["top slab T (K)"].tolist()
        assert high > low + 100, (low, high)
    # at 2 Li/ps surface atoms diffuse at least 20 times faster than bulk atoms (bulk D at its
    # upper bound: D plus twice its standard error); at 8 Li/ps the heat of landing melts the top
    # and the bulk group with it
    low_rate = table[table.rate == 2]
    surface, bulk = low_rate["D surface (Å²/ps)"], low_rate["D bulk (Å²/ps)"] + 2 * low_rate["D bulk stderr"]
    assert (surface > 2 * low_rate["D surface stderr"]).all() and (surface > 20 * bulk).all(), low_rate
    # the substrate's interior (its z-slabs wholly between the bottom layer and the top two) stays
    # bcc under deposition at 2 Li/ps at both temperatures (a-CNA of 0.2 ps averages, the last 20 %
    # of each run); at 8 Li/ps the heat of landing disorders it from the top
    fields = open_campaign(config.workdir).fields("deposition").load()
    spacing = 3.47 / 2  # the (100) layer spacing of substrate100
    half = config.analysis.slab_width_angstrom / 2
    top = fields.substrate_top
    interior = (fields.z - half > top - 9.5 * spacing) & (fields.z + half < top - 1.5 * spacing)
    bcc = steady_state(fields.structure_fraction_by_slab.sel(structure="bcc"), fields.n_valid_time).mean("time")
    interior_bcc = bcc.where(interior).mean("z").sel(replica=0)
    assert (interior_bcc.sel(rate=2) >= 0.85).all(), interior_bcc.values
    assert (interior_bcc.sel(rate=8) < interior_bcc.sel(rate=2) - 0.1).all(), interior_bcc.values
    for name in ("temperature_profile", "bcc_fraction", "msd_surface"):
        assert (config.workdir / "plots" / f"deposition_{name}.png").stat().st_size > 10_000


@pytest.mark.slow
def test_rerun_redoes_nothing(quickstart, tmp_path):
    config, _ = quickstart
    override = tmp_path / "configs" / "quickstart.yaml"
    override.parent.mkdir()
    text = (ROOT / "configs" / "quickstart.yaml").read_text().replace("workdir: runs/quickstart",
                                                                       f"workdir: {config.workdir}")
    override.write_text(text.replace("data/li-gpaw", str(ROOT / "data" / "li-gpaw")))
    rerun = subprocess.run([sys.executable, "-m", "campaign.cli", "run", str(override)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "everything was already done" in rerun.stdout


@pytest.mark.slow
def test_example_notebook_runs_on_the_store(quickstart, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    config, _ = quickstart
    notebook = nbformat.read(ROOT / "examples" / "analysis.ipynb", as_version=4)
    os.environ["CAMPAIGN_WORKDIR"] = str(config.workdir)
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "examples")}}).execute()
    finally:
        del os.environ["CAMPAIGN_WORKDIR"]
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    assert np.any(["surface" in o.get("text", "") for o in outputs])
