"""What a campaign prints and draws: the summary of a run, tables of iterations, ensembles and studies."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from campaign.config import CampaignConfig
from campaign.engine import StageResult
from storage import fields as store
from storage.properties import comparison_table
from storage.reduce import summary_table


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
    if summary.get("properties") is not None:
        console.print(properties_table(summary["properties"]))
    if summary.get("properties") is not None or summary["production"] is not None:
        for path in write_plots(config):
            console.print(f"plot: {path}")
    if summary["production"] is not None:
        print_production(console, config, summary.get("tables"))
    if summary["ran"] == 0:
        console.print("[green]everything was already done[/]: nothing was recomputed")
    console.print(f"wall time {summary['wall_time_s']:.1f} s")


def iterations_table(records: list[dict[str, Any]]) -> Table:
    """One row per active-learning iteration: exploration outcome ratios, labels, test RMSE, times."""
    table = Table(title="active learning")
    for column in ("iteration", "runs", "frames", "accurate", "candidate", "failed", "labels added",
                   "force RMSE (eV/Å)", "explore+label (s)", "train (s)", "stop"):
        table.add_column(column, overflow="fold")
    for r in records:
        rmse = r.get("force_rmse_ev_per_angstrom")
        table.add_row(str(r["iteration"]), f"{r['exploration_runs']} ({r['exploration_runs_failed']} failed)",
                      str(r["frames"]), f"{r['accurate_ratio']:.3f}", f"{r['candidate_ratio']:.3f}",
                      f"{r['failed_ratio']:.3f}", f"{r['labels_added']} (+{r['labels_failed']} failed)",
                      f"{rmse:.3f}" if rmse is not None else "-", f"{r['explore_and_label_wall_time_s']:.0f}",
                      f"{r['train_wall_time_s']:.0f}", r.get("converged") or "")
    return table


def properties_table(dataset: Any, reference: str | None = None) -> Table:
    """The property stage's comparison table; below it, each property that did not finish, and why."""
    frame = comparison_table(dataset, reference)
    table = Table(title="properties (bcc Li, 0 K)")
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*map(str, row))
    problems = [f"{p} {k}: {dataset.status.sel(potential=p, property=k).item()}"
                for p in dataset.potential.values for k in dataset.property.values
                if dataset.status.sel(potential=p, property=k).item() != "ok"]
    if problems:
        table.caption = "\n".join(problems)
    return table


def write_plots(config: CampaignConfig) -> list[Path]:
    """PNG plots of the property stage's curves (a line per potential) and of every production
    study that has the fields: z-profiles, phase fractions, MSD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from storage import open_campaign

    campaign = open_campaign(config.workdir)  # the store where storage.path says (campaign.json)
    written = []
    if config.properties:
        curves = sorted({v[len("curve_"):] for v in campaign.properties().data_vars if v.startswith("curve_")})
        shown = sorted({c.rsplit("_", 1)[0] if c.startswith("phonon_branch") else c for c in curves})
        for curve in shown:
            figure, ax = plt.subplots(figsize=(5.5, 4.2))
            campaign.plot.property_curve(curve, ax=ax)
            written.append(_save(figure, ax, config.workdir / "plots" / f"properties_{curve}.png", curve))
    for study in campaign.studies():
        fields = campaign.fields(study, chunks="blocks")
        plots = [("temperature_profile", "slab_temperature", campaign.plot.temperature_profile),
                 ("bcc_fraction", "structure_fraction", campaign.plot.phase_fractions),
                 ("msd_surface", "msd", campaign.plot.msd)]
        for name, variable, plot in plots:
            if variable not in fields:
                continue
            figure, ax = plt.subplots(figsize=(5.5, 4.2))
            plot(study, ax=ax)
            written.append(_save(figure, ax, config.workdir / "plots" / f"{study}_{name}.png",
                                 f"{study}: {name.replace('_', ' ')}"))
    return written


def _save(figure: Any, ax: Any, path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt

    ax.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


#: Above this many rows, a study's table is printed as means over replicas, then over its first dimension.
MAX_TABLE_ROWS = 40


def readable(table: Any) -> tuple[Any, str]:
    """A summary short enough to read: one row per run, else per sweep point (replicas
    averaged), else per value of the first sweep dimension; with the note saying which.
    The sweep dimensions are the columns before `status` (`storage.reduce.summary_table`)."""
    dims = list(table.columns[:list(table.columns).index("status")])
    values = [c for c in table.columns[len(dims) + 1:]]
    if len(table) <= MAX_TABLE_ROWS or not dims:
        return table, ""
    for keep in ([d for d in dims if d != "replica"], dims[:1]):
        grouped = table.assign(ok=table.status == "ok").groupby(keep, sort=False)
        means = grouped[values].mean().reset_index()
        means.insert(len(keep), "runs ok", grouped["ok"].sum().astype(int).values)
        means.insert(len(keep) + 1, "runs", grouped.size().values)
        if len(means) <= MAX_TABLE_ROWS:
            return means, f"mean over {', '.join(d for d in dims if d not in keep)} of {len(table)} runs"
    return means.head(MAX_TABLE_ROWS), f"the first {MAX_TABLE_ROWS} of {len(means)} rows"


def _cell(row: Any, column: str) -> str:
    value = row[column]
    if column.startswith("D ") and column.endswith("(Å²/ps)"):
        error = row.get(column.replace("(Å²/ps)", "stderr"))
        if error is not None and error == error and not value > 2 * error:
            # below twice its standard error D is not a measurement; a negative slope is an MSD
            # still on its vibrational plateau (its frames are correlated: the fit's error is too small)
            return f"unresolved (±{error:.2g})"
        return f"{value:.3g} ± {error:.1g}" if error is not None and error == error else f"{value:.3g}"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def print_production(console: Console, config: CampaignConfig, tables: dict[str, Any] | None = None) -> None:
    """Plots and one table per study: the rows the Dask cluster reduced as runs landed, or the store's."""
    console.print(f"fields: {config.store_path}  (open with: storage.open_campaign('{config.workdir}'))")
    for study in config.production:
        try:
            frame = (tables or {}).get(study.name)
            frame = run_summary(config, study.name) if frame is None else frame
        except Exception as error:  # a study without any finished run has no group in the store
            console.print(f"[yellow]{study.name}[/]: no fields ({error})")
            continue
        frame, note = readable(frame.sort_values([c for c in frame.columns[:1]], kind="stable"))
        table = Table(title=f"production study {study.name}" + (f" ({note})" if note else ""))
        shown = [c for c in frame.columns if not c.endswith(" stderr")]
        for column in shown:
            table.add_column(str(column), overflow="fold")
        for _, row in frame.iterrows():
            table.add_row(*(_cell(row, c) for c in shown))
        console.print(table)


def print_ensemble(console: Console, models: StageResult, workdir: Path) -> None:
    table = Table(title="ensemble")
    for column in ("member", "seed", "train frames", "force RMSE (eV/Å)", "energy RMSE (meV/atom)", "model"):
        table.add_column(column, overflow="fold")
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


def run_summary(config: CampaignConfig, study: str) -> Any:
    """The study's summary, one row per run, reduced from the store (see `storage.reduce.summary_table`)."""
    return summary_table(store.open_study(config.store_path, study, chunks="blocks"))
