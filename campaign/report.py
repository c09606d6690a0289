"""What a campaign prints and draws: the summary of a run, tables of iterations, ensembles and studies."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import xarray as xr
from rich.console import Console
from rich.table import Table

from campaign.config import CampaignConfig
from campaign.engine import StageResult
from storage import fields as store


def print_summary(console: Console, summary: dict[str, Any], config: CampaignConfig) -> None:
    labels, models = summary["labels"], summary["models"]
    if labels is not None:
        records = [r for outputs in labels.outputs.values() for r in outputs["records"]]
        ok = sum(r["status"] == "ok" for r in records)
        console.print(f"labels: {ok} ok, {len(records) - ok + len(labels.failed)} failed; "
                      f"{labels.ran} computed now, {labels.skipped} already done")
    if summary["iterations"]:
        console.print(iterations_table([{**asdict(r), **r.ratios()} for r in summary["iterations"]]))
    if models is not None:
        print_ensemble(console, models, summary["workdir"])
    if summary["production"] is not None:
        print_production(console, config)
    if summary["ran"] == 0:
        console.print("[green]everything was already done[/]: nothing was recomputed")
    console.print(f"wall time {summary['wall_time_s']:.1f} s")


def iterations_table(records: list[dict[str, Any]]) -> Table:
    """One row per active-learning iteration: exploration outcome ratios, labels, test RMSE, times."""
    table = Table(title="active learning")
    for column in ("iteration", "runs", "frames", "accurate", "candidate", "failed", "labels added",
                   "force RMSE (eV/Å)", "explore+label (s)", "train (s)", "stop"):
        table.add_column(column)
    for r in records:
        rmse = r.get("force_rmse_ev_per_angstrom")
        table.add_row(str(r["iteration"]), f"{r['exploration_runs']} ({r['exploration_runs_failed']} failed)",
                      str(r["frames"]), f"{r['accurate_ratio']:.3f}", f"{r['candidate_ratio']:.3f}",
                      f"{r['failed_ratio']:.3f}", f"{r['labels_added']} (+{r['labels_failed']} failed)",
                      f"{rmse:.3f}" if rmse is not None else "-", f"{r['explore_and_label_wall_time_s']:.0f}",
                      f"{r['train_wall_time_s']:.0f}", r.get("converged") or "")
    return table


def write_plots(config: CampaignConfig) -> list[Path]:
    """PNG plots of every production study that has the fields: z-profiles, phase fractions, MSD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from storage import open_campaign

    campaign = open_campaign(config.workdir)  # the store where storage.path says (campaign.json)
    written = []
    for study in campaign.studies():
        fields = campaign.fields(study)
        plots = [("temperature_profile", "slab_temperature", campaign.plot.temperature_profile),
                 ("bcc_fraction", "structure_fraction", campaign.plot.phase_fractions),
                 ("msd_surface", "msd", campaign.plot.msd)]
        for name, variable, plot in plots:
            if variable not in fields:
                continue
            figure, ax = plt.subplots(figsize=(5.5, 4.2))
            plot(study, ax=ax)
            ax.set_title(f"{study}: {name.replace('_', ' ')}")
            path = config.workdir / "plots" / f"{study}_{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            figure.tight_layout()
            figure.savefig(path, dpi=110)
            plt.close(figure)
            written.append(path)
    return written


def print_production(console: Console, config: CampaignConfig) -> None:
    console.print(f"fields: {config.store_path}  (open with: storage.open_campaign('{config.workdir}'))")
    for path in write_plots(config):
        console.print(f"plot: {path}")
    for study in config.production:
        try:
            frame = run_summary(config, study.name)
        except Exception as error:  # a study without any finished run has no group in the store
            console.print(f"[yellow]{study.name}[/]: no fields ({error})")
            continue
        table = Table(title=f"production study {study.name}")
        for column in frame.columns:
            table.add_column(str(column))
        for row in frame.itertuples(index=False):
            table.add_row(*(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row))
        console.print(table)


def print_ensemble(console: Console, models: StageResult, workdir: Path) -> None:
    table = Table(title="ensemble")
    for column in ("member", "seed", "train frames", "force RMSE (eV/Å)", "energy RMSE (meV/atom)", "model"):
        table.add_column(column)
    members = sorted(models.outputs.values(), key=lambda outputs: outputs["model_path"])
    for member, outputs in enumerate(members):
        metrics = outputs.get("metrics") or {}
        force = metrics.get("force_ev_per_angstrom_rmse")
        energy = metrics.get("energy_per_atom_ev_rmse")
        table.add_row(str(member), str(outputs["seed"]), str(outputs["n_training_frames"]),
                      f"{force:.3f}" if force is not None else "-",
                      f"{1000 * energy:.1f}" if energy is not None else "-",
                      str(Path(outputs["model_path"]).relative_to(workdir)))
    console.print(table)


def run_summary(config: CampaignConfig, study: str, filled_fraction: float = 0.25) -> Any:
    """Per run: final atoms, bottom and top slab temperature and bcc fraction (last 20 % of
    the run), surface and bulk D — reduced from the store with Dask. Returns a pandas table.

    The top (bottom) slab is the highest (lowest) holding at least `filled_fraction` of the
    fullest slab's mobile atoms, so a few atoms still falling are not taken for the surface.
    """
    from storage.reduce import filled_slabs, last_fraction

    dataset = store.open_study(config.store_path, study)
    sweep_dims = [d for d in dataset.run_status.dims]
    columns: dict[str, xr.DataArray] = {"status": dataset.run_status}
    if "n_atoms" in dataset:
        columns["final atoms"] = dataset.n_atoms.max("time")  # atoms are only ever added
    if "slab_temperature" in dataset:
        steady = last_fraction(dataset[["slab_temperature", "atoms_per_slab"]], 0.2)
        occupied = filled_slabs(steady.atoms_per_slab, filled_fraction)
        temperature = steady.slab_temperature.where(occupied).mean("time")
        filled = occupied.any("time")
        z = dataset.z.broadcast_like(temperature)
        top = z.where(filled).max("z")
        bottom = z.where(filled).min("z")
        columns["bottom slab T (K)"] = temperature.where(z == bottom).max("z")
        columns["top slab T (K)"] = temperature.where(z == top).max("z")
        columns["atoms in top slab"] = steady.atoms_per_slab.where(z == top).max("z").mean("time")
    if "structure_fraction" in dataset:
        columns["bcc fraction"] = last_fraction(dataset.structure_fraction.sel(structure="bcc"), 0.2).mean("time")
    if "diffusion_coefficient" in dataset:
        for group in dataset.group.values:
            columns[f"D {group} (Å²/ps)"] = dataset.diffusion_coefficient.sel(group=group)
    computed = xr.Dataset({k: v.reset_coords(drop=True) for k, v in columns.items()}).compute()
    table = computed.to_dataframe(dim_order=sweep_dims)  # rows in sweep order, last dimension fastest
    table = table[[c for c in columns]]
    table["status"] = table["status"].map({0: "missing", 1: "ok", 2: "failed"})
    return table.reset_index()[sweep_dims + list(columns)] if sweep_dims else table
