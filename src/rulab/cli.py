"""rulab: train an image classifier with a robustness method and measure how far to trust it (OOD detection,
calibration, covariate shift, far-away confidence) on the same checkpoint, in one report.

    rulab train [PRESET] [--config FILE] [--resume] [--dry-run] [--track tensorboard,mlflow] [--a.b=value ...]
    rulab eval CHECKPOINT [--benchmark NAME] [--shift SUITE] [--farconf] [--mc-dropout T] [--track ...] [--a.b=value ...]
    rulab eval --ensemble RUN RUN [RUN ...] [--benchmark NAME] [...]
    rulab convert WEIGHTS.pt --model NAME --mean M --std S [--preset P] [--a.b=value ...]
    rulab study NAME [--launcher local|slurm|ray] [--status] [--dry-run]     rulab results     rulab report
    rulab show PRESET|STUDY [--measure] [--a.b=value ...]
    rulab toy2d [--out DIR]     (Hein et al.'s two-moons toy: plain / CEDA / ACET confidence maps)
    rulab data fetch NAME       rulab data list
    rulab list [WHAT]           rulab --version

Every command is one Python call (``rulab.train``, ``rulab.evaluate_checkpoint``, ...). A user mistake prints one
line ``error: ...`` and exits with status 2; Ctrl-C exits with 130 and says how to resume.

Each command imports what it runs inside its function, so that ``rulab --help``, ``rulab --version`` and a mistyped
command answer without importing torch.

One concern, kept in one file: the command line: argument parsing and one small function per command, each a call of
the Python API.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

import rulab
from rulab.errors import ConfigError, RulabError, RulabWarning, StoreError

__all__ = ["main", "build_parser"]

_LISTABLE = {
    "models": "MODELS",
    "datasets": "DATASETS",
    "ood": "OOD_SETS",
    "corruptions": "CORRUPTIONS",
    "detectors": "DETECTORS",
    "methods": "METHODS",
    "presets": "PRESETS",
    "studies": "STUDIES",
    "benchmarks": "BENCHMARKS",
    "protocols": "PROTOCOLS",
    "augmentations": "AUGMENTATIONS",
}


def _split_overrides(extra: Sequence[str]) -> list[str]:
    """Accept ``--a.b=value`` / ``a.b=value`` leftovers as config overrides; anything else is an error."""
    out = []
    for item in extra:
        text = item[2:] if item.startswith("--") else item
        if "=" in text and "." in text.split("=", 1)[0] or (item.startswith("--") and "=" in text):
            out.append(text)
        else:
            raise ConfigError(
                f"unrecognised argument '{item}'; config overrides look like --section.key=value (see `rulab train --help`)"
            )
    return out


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("preset", nargs="?", help="a registered preset (`rulab list presets`)")
    p.add_argument("--config", help="a YAML file with config keys (may name a preset)")
    p.add_argument("--name", help="run name (default: the preset name, plus -s<seed>)")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--out", dest="out_dir", help="output directory for runs (default: runs)")


def _resolve(args: argparse.Namespace, overrides: list[str]) -> Any:
    from rulab.presets import load_config

    extra = list(overrides)
    for key, field in (("seed", "seed"), ("device", "device"), ("out_dir", "out_dir"), ("name", "name")):
        value = getattr(args, key, None)
        if value is not None:
            extra.append(f"{field}={value}")
    if args.preset is None and args.config is None:
        args.preset = "fmnist-plain"
    cfg = load_config(args.preset, args.config, extra)
    if args.name is None and args.seed is not None:
        from rulab.train.loop import with_seed

        cfg = with_seed(cfg, cfg.seed)
    return cfg


def cmd_train(args: argparse.Namespace, overrides: list[str]) -> int:
    from rulab.api import train
    from rulab.train.loop import run_dir_of

    if args.allow_config_change and not args.resume:
        raise ConfigError(
            "--allow-config-change changes the config of a run being resumed; use it together with --resume"
        )
    cfg = _resolve(args, overrides)
    finished_before = args.resume and (run_dir_of(cfg) / "model.safetensors").exists()
    if args.dry_run:
        from rulab.study.show import plan_run, render_run

        print(render_run(plan_run(cfg)), end="")
        print("dry run: the config is valid; nothing was trained or written")
        return 0
    t0 = time.time()
    run_dir = train(cfg, resume=args.resume, track=args.track, allow_config_change=args.allow_config_change)
    from rulab.distributed import is_main

    if is_main():
        if finished_before:
            print(f"{cfg.name} was already trained (nothing to resume) -> {run_dir}")
        else:
            print(f"trained {cfg.name} in {time.time() - t0:.1f} s -> {run_dir}")
    return 0


def cmd_eval(args: argparse.Namespace, overrides: list[str]) -> int:
    from rulab.api import evaluate_checkpoint, evaluate_ensemble

    t0 = time.time()
    if (args.checkpoint is None) == (args.ensemble is None):
        raise ConfigError(
            "give either one CHECKPOINT (a run directory) or --ensemble RUN RUN ..., not both and not neither"
        )
    if args.ensemble is not None and args.mc_dropout is not None:
        raise ConfigError(
            "--mc-dropout applies to one checkpoint; evaluate the ensemble without it (or each member with it)"
        )
    if args.name is not None and args.ensemble is None:
        raise ConfigError("--name names an ensemble's run; use it with --ensemble")
    if args.report:  # outputs are checked before the evaluation, not after it
        from pathlib import Path

        from rulab.io import ensure_writable_dir

        ensure_writable_dir(Path(args.report).resolve().parent)
    kw: dict[str, Any] = {"overrides": overrides}
    for key in ("benchmark", "shift", "detectors", "db", "protocol"):
        if getattr(args, key, None) is not None:
            kw[key] = getattr(args, key)
    if args.farconf:
        kw["farconf"] = True
    if args.no_farconf:
        kw["farconf"] = False
    if args.ensemble is not None:
        result = evaluate_ensemble(args.ensemble, name=args.name, **kw)
    else:
        if args.mc_dropout is not None:
            kw["mc_dropout"] = args.mc_dropout
        result = evaluate_checkpoint(args.checkpoint, **kw)
    print(result.summary())
    for what, why in result.meta.get("skipped", {}).items():
        print(f"skipped {what}: {why}")
    tuned = {d: hp for d, hp in result.meta.get("detectors", {}).items() if "objective" in hp}
    for det, hp in tuned.items():
        values = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in hp.items()
            if k not in ("objective", "tuned_on")
        )
        print(f"tuned {det} on {', '.join(hp['tuned_on'])}: {values} (validation fpr95_id {hp['objective']:.4f})")
    from pathlib import Path

    from rulab.api import eval_dir

    if args.ensemble is not None:
        run_dir = Path(result.meta["ensemble"]["dir"])
        where = run_dir / "eval" / result.meta["benchmark"]
    else:
        from rulab.checkpoint import resolve_checkpoint

        run_dir = resolve_checkpoint(args.checkpoint).parent
        where = eval_dir(
            args.checkpoint, result.meta["benchmark"], (result.meta.get("mc_dropout") or {}).get("passes", 0)
        )
    if args.track:
        from rulab.tracking import log_results

        log_results(result, args.track, run_dir, run_dir.name)
    if args.report:
        from rulab.reports import evaluation_report

        print(f"report: {evaluation_report(result, args.report)}")
    print(f"evaluated in {time.time() - t0:.1f} s -> {where}")
    return 0


def _floats(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise RulabError(f"{flag} takes comma-separated numbers such as 0.485,0.456,0.406, got '{text}'") from None


def cmd_convert(args: argparse.Namespace, overrides: list[str]) -> int:
    from rulab.api import convert

    run_dir = convert(
        args.weights,
        args.model,
        mean=_floats(args.mean, "--mean"),
        std=_floats(args.std, "--std"),
        preset=args.preset,
        config=args.config,
        overrides=overrides + ([f"seed={args.seed}"] if args.seed is not None else []),
        name=args.name,
        out_dir=args.out_dir,
        overwrite=args.overwrite,
    )
    print(f"converted {args.weights} -> {run_dir / 'model.safetensors'}; evaluate it with: rulab eval {run_dir}")
    return 0


def cmd_list(args: argparse.Namespace, overrides: list[str]) -> int:
    from rulab import registry

    whats = [args.what] if args.what else list(_LISTABLE)
    for what in whats:
        if what not in _LISTABLE:
            raise ConfigError(f"cannot list '{what}'; choose one of: {', '.join(_LISTABLE)}")
        reg = getattr(registry, _LISTABLE[what])
        print(f"{what}: {', '.join(reg.list())}")
    return 0


def cmd_data(args: argparse.Namespace, overrides: list[str]) -> int:
    from rulab.data import fetch as fetch_mod

    if args.action == "list":
        rows = fetch_mod.list_data()
        width = max(len(r["name"]) for r in rows) if rows else 4
        for r in rows:
            status = "present" if r.get("present") else "missing"
            print(f"{r['name']:<{width}}  {status:<8} {r.get('source') or ''}")
        print(f"data directory: {fetch_mod.dataset_root()}")
        return 0
    if not args.names:
        raise ConfigError(
            "say which dataset to fetch, e.g. `rulab data fetch fashion_mnist` (`rulab data list` shows them)"
        )
    for name in args.names:
        info = fetch_mod.fetch(name)
        where = f" -> {info['path']}" if info.get("path") else ""
        print(f"{name}: ok ({info.get('origin') or 'verified'}){where}")
    return 0


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    from rulab.checks import parse_seeds

    return parse_seeds(text)


def cmd_study(args: argparse.Namespace, overrides: list[str]) -> int:
    if args.status:
        from rulab.api import study_status

        print(study_status(args.name, seeds=_seeds(args.seeds), out_dir=args.out_dir, db=args.db, overrides=overrides))
        return 0
    if args.ensemble and args.no_ensemble:
        raise ConfigError("give --ensemble or --no-ensemble, not both")
    if args.dry_run:
        from rulab.presets.study_spec import launcher_config
        from rulab.study.plan import get_study
        from rulab.study.show import plan_study, render_study

        # the launcher settings are checked like the cells (an unknown key or a bad value is refused now)
        launcher_items = [o for o in overrides if o.lstrip("-").startswith("launcher.")]
        lcfg = launcher_config(get_study(args.name).launcher, args.launcher, launcher_items)
        plan = plan_study(
            args.name,
            _seeds(args.seeds),
            args.out_dir,
            [o for o in overrides if not o.lstrip("-").startswith("launcher.")],
            ensemble=(bool(args.ensemble) if args.ensemble or args.no_ensemble else None),
            mc_dropout=args.mc_dropout,
        )
        print(render_study(plan), end="")
        if plan.error:
            raise ConfigError(plan.error)
        print(f"launcher: {lcfg.name}")
        print("dry run: every cell resolved and validated; nothing was trained, evaluated or written")
        return 0
    from rulab.api import study

    kw: dict[str, Any] = {"out_dir": args.out_dir, "db": args.db, "seeds": _seeds(args.seeds), "overrides": overrides}
    if args.launcher is not None:
        kw["launcher"] = args.launcher
    if args.no_report:
        kw["report"] = False
    if args.no_eval:
        kw["evaluate"] = False
    if args.ensemble or args.no_ensemble:
        kw["ensemble"] = bool(args.ensemble)
    if args.mc_dropout is not None:
        kw["mc_dropout"] = args.mc_dropout
    study(args.name, **kw)  # prints progress, the summary table, the report's path and the time
    return 0


def cmd_show(args: argparse.Namespace, overrides: list[str]) -> int:
    from rulab.study.show import show

    print(
        show(
            args.name,
            overrides,
            config=args.config,
            measure=args.measure,
            seeds=_seeds(args.seeds),
            out_dir=args.out_dir,
        ),
        end="",
    )
    return 0


def cmd_results(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ConfigError(f"`rulab results` takes no config overrides, got '{overrides[0]}'")
    from rulab.results.compare import compare_pivot
    from rulab.results.export import render, results_pivot, write
    from rulab.results.replicates import ArrayReplicates

    store = _open_db(args.db)
    if args.paper:
        if not args.study:
            raise ConfigError("`rulab results --paper` prints a paper study's tables; say which with --study NAME")
        from rulab.reports.papers import study_paper_markdown

        text = study_paper_markdown(args.db, args.study)
        if not text:
            raise StoreError(f"{args.db} holds no results of study '{args.study}' or it declares no paper table")
        write(text, args.out)
        if args.out:
            print(f"wrote {args.out}")
        return 0
    records = store.results(**({"study": args.study} if args.study else {}))
    if not records:
        store.close()
        where = f" for study '{args.study}'" if args.study else ""
        raise StoreError(f"{args.db} holds no results{where}; run `rulab study NAME` (or `rulab eval`) first")
    with warnings.catch_warnings():  # only the runs' directories are read here (their configs are not shown)
        warnings.simplefilter("ignore", RulabWarning)
        runs = store.runs(run_id=sorted({r["run_id"] for r in records}))
    store.close()
    replicates = ArrayReplicates(runs)
    filters = {"metrics": args.metric, "kind": args.kind, "detector": args.detector, "dataset": args.dataset}
    if args.compare:
        table = compare_pivot(records, args.compare, replicates=replicates, **filters)
    else:
        table = results_pivot(records, replicates=replicates, **filters)
    write(render(table, args.format), args.out)
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _open_db(path: str) -> Any:
    from pathlib import Path

    from rulab.results.store import ResultStore

    if not Path(path).exists():
        raise StoreError(f"there is no results database at {path}; run `rulab study fmnist-default` first or pass --db")
    return ResultStore(path, read_only=True)


def cmd_report(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ConfigError(f"`rulab report` takes no config overrides, got '{overrides[0]}'")
    from rulab.api import report

    t0 = time.time()
    path = report(db=args.db, study=args.study, out=args.out)
    print(f"wrote {path} in {time.time() - t0:.1f} s")
    return 0


def cmd_toy2d(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ConfigError(f"`rulab toy2d` takes no config overrides, got '{overrides[0]}'")
    from rulab.reports import toy2d_report
    from rulab.toy2d import run_toy2d

    t0 = time.time()
    out = run_toy2d(
        args.out_dir,
        seed=args.seed,
        iterations_scale=args.iterations_scale,
        parity=args.parity,
        resolution=args.resolution,
    )
    print("mean confidence (%) over [0,1]², [-2,3]², [-5,6]², [-10,10]²:")
    for model, regions in out["mean_conf"].items():
        print(
            f"  {model:<6}"
            + "".join(f"{100 * v:>9.1f}" for v in regions.values())
            + f"   train acc {100 * out['train_acc'][model]:.1f}%"
        )
    page = toy2d_report(args.out_dir)
    print(
        f"trained in {time.time() - t0:.1f} s -> {page} (a study report shows the maps when {args.out_dir} is <study --out>/toy2d)"
    )
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``error: ...`` line (via :func:`main`), not a usage block."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message}; see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rulab`` command (its subcommands' parsers share its class)."""
    parser = _Parser(
        prog="rulab", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"rulab {rulab.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a model (a preset, a YAML file, overrides)")
    _add_config_args(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its last checkpoint (with the config it was trained with)",
    )
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: continue with a config that differs from the run's recorded one (the step and the changed keys are recorded)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve and validate the config, print the plan (data, cost), train nothing",
    )
    p.add_argument(
        "--track", help="experiment trackers, comma-separated: tensorboard, mlflow (pip install 'rulab[tracking]')"
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint: OOD detection, calibration, shift, far-away confidence")
    p.add_argument("checkpoint", nargs="?", help="a run directory or .safetensors file")
    p.add_argument(
        "--ensemble",
        nargs="+",
        metavar="RUN",
        help="evaluate the deep ensemble of these runs (two or more run directories, same data)",
    )
    p.add_argument("--name", help="the ensemble's run name (default <preset>-ens-s0-s1-...)")
    p.add_argument(
        "--mc-dropout",
        type=int,
        metavar="T",
        help="evaluate MC dropout: the mean of T seeded dropout passes (a model with dropout)",
    )
    p.add_argument("--benchmark", help="benchmark (`rulab list benchmarks`)")
    p.add_argument("--protocol", help="OOD protocol (`rulab list protocols`)")
    p.add_argument("--shift", help="shift suite, or '' for none")
    p.add_argument("--detectors", help="comma-separated detectors (`rulab list detectors`)")
    p.add_argument("--farconf", action="store_true", help="run the far-away / worst-case tests")
    p.add_argument("--no-farconf", action="store_true", help="skip the far-away / worst-case tests")
    p.add_argument("--db", help="results database (default runs/results.db)")
    p.add_argument("--track", help="log the results to experiment trackers: tensorboard, mlflow (comma-separated)")
    p.add_argument("--report", metavar="FILE", help="also write the single-file HTML report of this evaluation to FILE")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "convert", help="turn a state_dict trained outside rulab into a rulab checkpoint (then: rulab eval)"
    )
    p.add_argument("weights", help="a .pt/.pth state_dict (torch.save(model.state_dict(), path)) or .safetensors file")
    p.add_argument(
        "--model", required=True, help="a registered model (`rulab list models`, e.g. resnet18) or torchvision:<arch>"
    )
    p.add_argument(
        "--mean", help="per-channel mean of the training normalisation in [0,1] pixels, e.g. 0.286 (0 for none)"
    )
    p.add_argument("--std", help="per-channel std of the training normalisation, e.g. 0.353 (1 for none)")
    p.add_argument(
        "--preset",
        default="fmnist-plain",
        help="preset whose data and evaluation settings the checkpoint records (default: fmnist-plain)",
    )
    p.add_argument("--config", help="a YAML config file (data, eval sections)")
    p.add_argument("--name", help="run name (default: the weights file name)")
    p.add_argument("--seed", type=int, help="seed of the data splits")
    p.add_argument("--out", dest="out_dir", help="output directory for runs (default: runs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint of the same name")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("study", help="train and evaluate a study (presets x seeds), then summarise and report")
    p.add_argument("name", help="a registered study (`rulab list studies`), e.g. fmnist-default, or a study YAML file")
    p.add_argument("--seeds", help="comma-separated seeds to run instead of the study's, e.g. 0,1")
    p.add_argument(
        "--out",
        dest="out_dir",
        default="runs",
        help="directory for run directories, the database and the report (default: runs)",
    )
    p.add_argument("--db", help="results database (default: <out>/results.db)")
    p.add_argument("--no-report", action="store_true", help="do not write the HTML report")
    p.add_argument("--no-eval", action="store_true", help="only train (evaluate later by running the study again)")
    p.add_argument(
        "--launcher",
        choices=["local", "slurm", "ray"],
        help="where the cells run: local (default), slurm (submitit) or ray (pip install 'rulab[cluster]'); "
        "resources as --launcher.slurm.partition=gpu, --launcher.ray.num_gpus=1 (docs/distributed.md)",
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="print where each cell stands (queued/running/finished/failed, job ids, logs of failures) and exit",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="plan and validate every cell, print the plan (runs, data, cost), run nothing",
    )
    p.add_argument(
        "--ensemble",
        action="store_true",
        help="also evaluate each method's seeds as one deep ensemble (a run of its own)",
    )
    p.add_argument(
        "--no-ensemble", action="store_true", help="do not evaluate ensembles, even if the study does by default"
    )
    p.add_argument(
        "--mc-dropout",
        type=int,
        metavar="T",
        help="also evaluate every run whose model has dropout with MC dropout over T passes",
    )
    p.set_defaults(func=cmd_study)

    p = sub.add_parser(
        "show",
        help="what a preset or study will do: resolved config, data needed (present here?), runs, cost estimate",
        description="Show the resolved config of a preset (or each preset of a study), the data it reads and whether each "
        "is on this machine, the number of runs, and an estimate of the cost: the model's forward FLOPs (counted on the "
        "meta device) times the method's passes per training image times the images of every epoch, plus the "
        "evaluation's forward passes; --measure also times one training step here and converts the work to time. "
        "Reads no data and writes nothing.",
    )
    p.add_argument("name", help="a registered preset or study (`rulab list presets`, `rulab list studies`)")
    p.add_argument("--config", help="a YAML file with config keys applied to the preset")
    p.add_argument(
        "--measure",
        action="store_true",
        help="time one training step of the model on this machine to estimate the time",
    )
    p.add_argument("--seeds", help="for a study: comma-separated seeds instead of the study's")
    p.add_argument(
        "--out", dest="out_dir", default="runs", help="for a study: the output directory it would use (default: runs)"
    )
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "results", help="tables of stored results: mean +- std over seeds per method, with 95%% intervals"
    )
    p.add_argument("--db", default="runs/results.db", help="results database (default: runs/results.db)")
    p.add_argument("--study", help="only the runs of this study")
    p.add_argument("--metric", help="comma-separated metrics (acc,ece,auroc,...); default: the study summary")
    p.add_argument("--kind", choices=["id", "ood", "shift", "farconf"], help="only rows of this kind")
    p.add_argument("--detector", help="comma-separated detectors (msp,energy,...)")
    p.add_argument("--dataset", help="comma-separated datasets / OOD sets")
    p.add_argument(
        "--compare",
        metavar="BASELINE",
        help="show each method's paired difference to this method (e.g. fmnist-plain), with its 95%% interval",
    )
    p.add_argument(
        "--format", default="text", choices=["text", "md", "latex", "csv"], help="output format (default: text)"
    )
    p.add_argument("--out", help="write to this file instead of printing")
    p.add_argument(
        "--paper",
        action="store_true",
        help="print the study's paper-style tables (markdown) as the report shows them, e.g. ODIN's per-set T, ε, FPR95, "
        "detection error, AUROC, AUPR-In/Out",
    )
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("report", help="write the single-file HTML report from the results database")
    p.add_argument("--db", default="runs/results.db", help="results database (default: runs/results.db)")
    p.add_argument("--study", help="only the runs of this study")
    p.add_argument("--out", help="the HTML file (default: report.html beside the database)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "toy2d", help="Hein et al.'s two-moons toy: train plain, CEDA and ACET MLPs and map their confidence"
    )
    p.add_argument(
        "--out",
        dest="out_dir",
        default="runs/toy2d",
        help="output directory: PNGs, toy2d.json, toy2d.safetensors and toy2d.html (default: runs/toy2d, "
        "where the report of a study run with --out runs finds it)",
    )
    p.add_argument("--seed", type=int, default=0, help="data, initialisation and noise seed (default: 0)")
    p.add_argument(
        "--iterations-scale",
        type=float,
        default=1.0,
        help="multiply every recipe's iterations (default 1: 400 plain, 3,000 CEDA/ACET, as the notebook)",
    )
    p.add_argument("--resolution", type=int, default=200, help="grid points per axis of each map (default: 200)")
    p.add_argument("--parity", action="store_true", help="ACET with the notebook's no-op PGD projection (its bug)")
    p.set_defaults(func=cmd_toy2d)

    p = sub.add_parser("list", help="list registered names")
    p.add_argument("what", nargs="?", help=", ".join(_LISTABLE))
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("data", help="fetch datasets or list what is present")
    p.add_argument("action", choices=["fetch", "list"])
    p.add_argument("names", nargs="*")
    p.set_defaults(func=cmd_data)
    return parser


_INTERRUPTED = {
    "train": "interrupted; run the same command with --resume to continue from the last checkpoint",
    "study": "interrupted; run the same command again to continue (finished runs are kept, an interrupted one resumes)",
    "eval": "interrupted before the results were written; run the same command again (the network outputs computed so far are cached)",
}


def _one_line(message: str) -> str:
    """``message`` as one printable line (an error that spans lines, or holds a control character, is a bug to fix,
    but the user still gets one line)."""
    text = " ".join(str(message).split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _show_warning(
    message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """Print rulab's own warnings as ``warning: <message>`` (others keep Python's format)."""

    if issubclass(category, RulabWarning):
        print(f"warning: {_one_line(str(message))}", file=sys.stderr)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rulab`` command; returns the exit status.

    0: done; 2: a user mistake or bad input (one ``error: ...`` line); 130: Ctrl-C (one line saying how to
    continue); 1: an internal error, a bug in rulab (its traceback and a request to report it).
    """
    parser = build_parser()
    command = None
    saved = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        args, extra = parser.parse_known_args(argv)
        command = args.command
        if args.command is None:
            parser.print_help()
            return 0
        overrides = _split_overrides(extra)
        return int(args.func(args, overrides) or 0)
    except RulabError as err:
        print(f"error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(_INTERRUPTED.get(command or "", "interrupted"), file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - anything else is a bug: show it as one, with its traceback
        import traceback

        traceback.print_exc()
        print(
            f"internal error in rulab {rulab.__version__} (a bug, not a mistake in your input); please report it with the "
            "traceback above and the command you ran",
            file=sys.stderr,
        )
        return 1
    finally:
        warnings.showwarning = saved


if __name__ == "__main__":
    sys.exit(main())
