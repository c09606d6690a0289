"""The `campaign` command line.

Exit codes: 0 success, 1 the campaign ran and failed (report printed), 2 bad input
(config or arguments). Bad input never prints a traceback: one line per problem.
"""

from __future__ import annotations

import argparse
import sys

from campaign.config import CampaignConfig, ConfigError, load_config


def _load_or_exit(path: str, scale: str | None = None) -> CampaignConfig:
    try:
        return load_config(path, scale)
    except ConfigError as error:
        print(f"{error.source}: invalid campaign config ({len(error.problems)} problem"
              f"{'s' if len(error.problems) != 1 else ''})", file=sys.stderr)
        for line in error.problems:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(2) from None


def _print_warnings(config: CampaignConfig) -> None:
    for line in config.warnings():
        print(f"warning: {line}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.config, args.scale)
    _print_warnings(config)

    def explored_at(iteration: int) -> int:
        return sum(len(s.points()) * len(s.systems) for s in config.explore if s.from_iteration <= iteration)

    starts = sorted({section.from_iteration for section in config.explore} - {0})
    later = ", ".join(f"{explored_at(k)} from iteration {k}" for k in starts)
    n_explore = f"{explored_at(0)} ({later})" if later else str(explored_at(0))
    n_production = sum(len(study.points()) * len(study.systems) for study in config.production)
    properties = f"{len(config.properties.compute)} properties x {len(config.properties.potentials)} " \
                 f"potentials, " if config.properties else ""
    print(f"{args.config}: valid campaign '{config.campaign.name}' "
          f"({len(config.systems)} systems, {n_explore} exploration runs per iteration, {properties}"
          f"{n_production} production runs; workdir {config.workdir})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.config, args.scale)
    _print_warnings(config)
    from campaign.engine import StageFailed
    from campaign.driver import CampaignBusy
    from campaign.run import run_campaign
    from storage.errors import StoreError

    try:
        run_campaign(config, retry_failed=args.retry_failed)
    except CampaignBusy as error:
        print(f"campaign run: {error}", file=sys.stderr)
        return 1
    except (StageFailed, StoreError) as error:
        print(f"campaign stopped: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"resume with: campaign run {args.config}" + (f" --scale {args.scale}" if args.scale else ""),
              file=sys.stderr)
        return 130
    return 0


def _coordinates(items: list[str]) -> dict[str, object]:
    """['temperature=300', 'system=slab'] -> {'temperature': 300, 'system': 'slab'} (numbers as numbers)."""
    import yaml

    result = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise SystemExit(f"campaign analyze: --at takes name=value, not {item!r}")
        result[key] = yaml.safe_load(value)
    return result


def cmd_analyze(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.config, args.scale)
    from campaign.analyze import ingest, recompute
    from storage.errors import StoreError
    from tasks.fields import FIELDS

    unknown = [f for f in args.fields or [] if f not in FIELDS]
    if unknown:
        print(f"campaign analyze: {FIELDS.unknown(unknown[0])}", file=sys.stderr)
        return 2
    try:
        if args.ingest:
            if not (args.into and args.fields):
                print("campaign analyze: --ingest needs --into STUDY and --fields", file=sys.stderr)
                return 2
            at = ingest(config, args.ingest, args.format, args.into, _coordinates(args.at or []), args.fields,
                        args.timestep, args.protocol)
            print(f"{args.ingest}: fields {', '.join(args.fields)} into study '{args.into}' at {at}")
            return 0
        if not args.study:
            print("campaign analyze: give --study (recompute from its stored trajectories) or --ingest FILE",
                  file=sys.stderr)
            return 2
        from campaign.production import start_dask

        study = next((s for s in config.production if s.name == args.study), None)
        fields = args.fields or ([name for name, _ in config.field_choices(study) if name != "trajectory"]
                                 if study else [])
        client = start_dask(config)
        try:
            runs = recompute(config, client, args.study, fields, args.into)
        finally:
            client.close()
            client.cluster.close()
        print(f"study '{args.study}': {', '.join(fields)} from {runs} stored trajectories into "
              f"'{args.into or args.study + '_analyzed'}'")
    except (StoreError, ValueError, FileNotFoundError) as error:
        print(f"campaign analyze: {error}", file=sys.stderr)
        return 2
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from campaign.export import export_campaign

    config = _load_or_exit(args.config, args.scale)
    try:
        result = export_campaign(config, Path(args.destination))
    except FileNotFoundError as error:
        print(f"campaign export: {error}", file=sys.stderr)
        return 2
    models = f"the ensemble of iteration {result.models_iteration}" if result.models_iteration is not None \
        else "no complete ensemble"
    if result.unfinished_iteration:
        models += ", {1} finished members of iteration {0}".format(*result.unfinished_iteration)
    for member in result.in_training:
        models += ", member {1} of iteration {0} in training (its checkpoint at step {2} of {3})".format(*member)
    print(f"{args.destination}: {len(result.train)} training and {len(result.test)} test labels, "
          f"{len(result.failed)} failed (in manifest.json), {models}"
          + (f", the selections of iterations {', '.join(map(str, result.selections))}" if result.selections else "")
          + "".join(f"; iteration {iteration}'s {runs} finished exploration runs (its selection not made yet)"
                    for iteration, runs in result.explorations.items()))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from campaign.status import print_status

    config = _load_or_exit(args.config, args.scale)
    return print_status(config)


def cmd_watch(args: argparse.Namespace) -> int:
    from campaign.status import watch

    config = _load_or_exit(args.config, args.scale)
    return watch(config, args.interval)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="campaign", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a campaign YAML file and exit (0 valid, 2 invalid)")
    validate.add_argument("config", help="campaign YAML file")
    validate.set_defaults(handler=cmd_validate)
    run = commands.add_parser("run", help="run the campaign; rerunning resumes and redoes nothing finished")
    run.add_argument("config", help="campaign YAML file")
    run.add_argument("--retry-failed", action="store_true",
                     help="run again the tasks that failed deterministically (after fixing the cause)")
    run.set_defaults(handler=cmd_run)
    status = commands.add_parser("status", help="tasks by stage and state, failures and recent events")
    status.add_argument("config", help="campaign YAML file")
    status.set_defaults(handler=cmd_status)
    watch = commands.add_parser("watch", help="the status table, refreshed until interrupted (Ctrl-C)")
    watch.add_argument("config", help="campaign YAML file")
    watch.add_argument("--interval", type=_positive_seconds, default=5.0,
                       help="seconds between refreshes, > 0 (default 5)")
    watch.set_defaults(handler=cmd_watch)
    analyze = commands.add_parser("analyze", help="fields from stored or external trajectories, into the store")
    analyze.add_argument("config", help="campaign YAML file")
    analyze.add_argument("--study", help="a study whose stored trajectories to analyse")
    analyze.add_argument("--fields", nargs="+", help="fields to compute (default: the study's)")
    analyze.add_argument("--into", help="the study to write (default: <study>_analyzed)")
    analyze.add_argument("--ingest", help="an external trajectory file instead")
    analyze.add_argument("--format", default="lammps-dump", choices=["lammps-dump", "extxyz", "traj"])
    analyze.add_argument("--at", nargs="+", help="the ingested run's sweep coordinates, name=value")
    analyze.add_argument("--timestep", type=float, help="ps between steps (dumps without ITEM: TIME) or frames")
    analyze.add_argument("--protocol", default="", help="the protocol that made it (deposition: z is open)")
    analyze.set_defaults(handler=cmd_analyze)
    export = commands.add_parser("export", help="the labels and the newest ensemble as a directory to commit")
    export.add_argument("config", help="campaign YAML file")
    export.add_argument("destination", help="directory to write (replaced whole), e.g. data/li-gpaw")
    export.set_defaults(handler=cmd_export)
    for command in (validate, run, status, watch, analyze, export):
        command.add_argument("--scale", help="apply the overrides of `scales.<name>` in the config (e.g. small)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
