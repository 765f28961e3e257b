"""The ``medsight`` command: a thin shell over the Python API.

Every command turns a :class:`~medsight.errors.MedSightError`, or an ``OSError`` on a path (an
output folder that cannot be made, a file that cannot be written), into one red line on stderr
and exit status 2; an unexpected exception is reported in one line too (exit 3), with the
traceback only when ``MEDSIGHT_DEBUG=1``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["app", "run"]

app = typer.Typer(name="medsight", help="Deep-learning diagnosis on medical images.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
models_app = typer.Typer(help="The model registry and the shipped models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

out = Console()
err = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=err, show_path=False)],
                        force=True)


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command; turn errors into one line and an exit status."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from medsight.errors import MedSightError
        from medsight.io.limits import ReadLimits

        try:
            ReadLimits.from_env()  # a bad MEDSIGHT_MAX_* is one error for the command, not one per input
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except MedSightError as exc:
            err.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            if exc.filename is None:  # not about a path the user gave: unexpected
                return _unexpected(exc)
            err.print(f"[bold red]error:[/bold red] cannot open or create {exc.filename}: {exc.strerror or exc}",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(130) from None
        except Exception as exc:  # an unexpected failure: still one line unless debugging
            return _unexpected(exc)

    return wrapper


def _unexpected(exc: Exception) -> None:
    """A failure that is not the user's: one line and exit 3 (the traceback with ``MEDSIGHT_DEBUG=1``)."""
    if os.environ.get("MEDSIGHT_DEBUG"):
        raise exc
    err.print(f"[bold red]error:[/bold red] unexpected {type(exc).__name__}: {exc} "
              "(set MEDSIGHT_DEBUG=1 for the traceback and please report it)", highlight=False, soft_wrap=True)
    raise typer.Exit(3) from None


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")]
BackendOpt = Annotated[str, typer.Option("--backend", help="torch, or onnxruntime: run the network through the "
                                                           "model folder's ONNX export (medsight export).")]


@app.command()
@_guard
def train(
    config: Annotated[Path, typer.Argument(help="YAML config (see configs/).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder to create.")],
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key.sub=value.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run saved in --out.")] = False,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="Train with DDP over this many processes on this "
                                                              "machine (runs torchrun; see docs/scale.md).")] = 1,
    verbose: Verbose = False,
) -> None:
    """Train a model from a config; writes the model, metrics log, curves and report into --out."""
    from medsight.api import train as api_train
    from medsight.cli.progress import TrainingProgress
    from medsight.config import load_config
    from medsight.engine.distributed import world

    _setup_logging(verbose)
    cfg = load_config(config, overrides or [])
    w = world()
    if nproc > 1 and not w.distributed:  # start the processes: torchrun, on this machine alone
        import subprocess

        args = [str(config), "--out", str(out_dir), *(a for o in overrides or [] for a in ("--set", o)),
                *(["--resume"] if resume else []), *(["--verbose"] if verbose else [])]
        out.print(f"[bold]training[/bold] {cfg.name} with DDP over {nproc} processes (torchrun)")
        code = subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                f"--nproc-per-node={nproc}", "-m", "medsight", "train", *args])
        raise typer.Exit(code)
    if w.main:
        out.print(f"[bold]training[/bold] {cfg.name} ({cfg.task}, {cfg.model.name}) on {cfg.data.source}"
                  + (f" (DDP: {w.size} processes)" if w.distributed else ""))
    with TrainingProgress(out if w.main else Console(quiet=True)) as progress:
        model = api_train(config, run_dir=out_dir, overrides=overrides or [], observers=[progress], resume=resume)
    if model is None:  # another rank's process: rank 0 reports
        return
    t = model.manifest.get("training", {})
    out.print(f"[green]done[/green] in {t.get('wall_time_s')} s; model saved to [bold]{out_dir / 'model'}[/bold]")
    for split, m in model.manifest.get("metrics", {}).items():
        out.print(f"  {split}: " + ", ".join(f"{k} {v}" for k, v in m.items() if not isinstance(v, (list, dict))))
    if (out_dir / "evaluation" / "report.html").is_file():
        out.print(f"  report: {out_dir / 'evaluation' / 'report.html'}")


def _task_options(task: Any, args: list[str], *, with_model: bool) -> dict[str, Any]:
    """The ``--NAME VALUE`` options left over by ``evaluate``'s own, as keyword arguments of the
    task's ``evaluate`` (``with_model``) or ``evaluate_outputs``, typed by its ``evaluate_options``.

    Raises:
        ConfigError: an option the task does not take (the error lists those it takes), a
            missing or malformed value, or a stray argument.
    """
    from medsight.errors import ConfigError

    spec = {o.flag: o for o in task.evaluate_options
            if o.without_model is None or o.without_model is (not with_model)}
    takes = ", ".join(sorted(spec)) or "none"
    mode = "with --model" if with_model else "without --model"
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        token = args[i]
        flag, eq, inline = token.partition("=")
        if not flag.startswith("--"):
            raise ConfigError(f"unexpected argument {token!r}; evaluate takes options only (--NAME VALUE)")
        opt = spec.get(flag)
        if opt is None:
            other = next((o for o in task.evaluate_options if o.flag == flag), None)
            if other is not None:
                raise ConfigError(f"{flag} is used {'without' if other.without_model else 'with'} --model; "
                                  f"{mode} the {task.name} task takes {takes}")
            raise ConfigError(f"no such option {flag}: {mode} the {task.name} task takes {takes} "
                              "(medsight evaluate --task-options lists them)")
        if opt.type is bool:
            value: Any = inline.lower() not in ("0", "false", "no") if eq else True
            i += 1
        else:
            if eq:
                raw = inline
                i += 1
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                raw = args[i + 1]
                i += 2
            else:
                raise ConfigError(f"{flag} needs a value")
            try:
                value = opt.type(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"{flag} takes a {opt.type.__name__}; got {raw!r}") from None
        out[opt.name] = value
    return out


def _print_task_options() -> None:
    from medsight.tasks.base import get_task, list_tasks

    t = Table(title="task options of medsight evaluate")
    for c in ("task", "option", "type", "when"):  # names are read whole (and copied): never wrapped
        t.add_column(c, no_wrap=True)
    t.add_column("what", overflow="fold", ratio=1)
    for name in list_tasks():
        task = get_task(name)
        for o in task.evaluate_options:
            when = {None: "always", True: "without --model", False: "with --model"}[o.without_model]
            t.add_row(name, o.flag, "flag" if o.type is bool else o.type.__name__.lower(), when, o.help)
    out.print(t)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@_guard
def evaluate(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Shipped model name or saved-model folder "
                                                                   "(omit to score saved outputs, see --task).")]
    = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="MedMNIST .npz, class folder, CSV, Decathlon "
                                                                 "folder, or a folder of scans.")] = None,
    split: Annotated[str | None, typer.Option(help="train, val, test, or all (default: the task's: test for "
                                                   "classification, every labelled case for segmentation).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the metrics as JSON here.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Per-case metrics as CSV.")] = None,
    task_name: Annotated[str | None, typer.Option("--task", help="Without --model: the task whose saved outputs "
                                                                 "are scored (default: the only one that can).")]
    = None,
    task_options: Annotated[bool, typer.Option("--task-options", help="List each task's own options and exit.")]
    = False,
    backend: BackendOpt = "torch",
    verbose: Verbose = False,
) -> None:
    """Evaluate a model on a labelled split at its stored operating point, or score saved outputs.

    Further --NAME VALUE options go to the model's task; --task-options lists each task's.
    """
    from medsight.errors import ConfigError
    from medsight.tasks.base import get_task, list_tasks

    _setup_logging(verbose)
    if task_options:
        _print_task_options()
        return
    m = None
    if model is not None:
        from medsight.models.saved import load_model

        if data is None:
            raise ConfigError("evaluate --model needs --data (the labelled data to evaluate on)")
        m = load_model(model, backend=backend)
        task = get_task(m.task)
        options = _task_options(task, list(ctx.args), with_model=True)
        split = split or task.default_split or "all"
        result = task.evaluate(m, data, split=None if split == "all" else split, csv_path=csv_out, **options)
    else:
        scorers = [n for n in list_tasks() if get_task(n).scores_outputs]
        if task_name is None and len(scorers) != 1:
            raise ConfigError("evaluate needs --model (or, to score saved outputs, --task: one of "
                              f"{', '.join(scorers) or 'none'})")
        name = task_name or scorers[0]
        task = get_task(name)
        if not task.scores_outputs:
            raise ConfigError(f"the {name} task cannot score outputs without a model; give --model "
                              f"(tasks that can: {', '.join(scorers) or 'none'})")
        options = _task_options(task, list(ctx.args), with_model=False)
        result = task.evaluate_outputs(data=data, csv_path=csv_out, **options)
        split = result.get("split") or "all"
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=1))
    if report:
        task.write_report(result, report, model=m)
    what = m.name if m is not None else f"{task.name} outputs"
    table = Table(title=f"{what} on {result.get('data', data)} ({split}, n={result.get('n')})")
    table.add_column("metric")
    table.add_column("value")
    for k, v in result.items():
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if number or (isinstance(v, dict) and k in ("dice", "hd95_mm")):
            ci = result.get(f"{k}_ci95")
            table.add_row(k, f"{v}" + (f"  (95% CI {ci[0]}–{ci[1]})" if ci else ""))
    out.print(table)
    if result.get("skipped"):
        err.print(f"[yellow]{len(result['skipped'])} input(s) skipped[/yellow]; see the JSON output")
    if json_out:
        out.print(f"  metrics: {json_out}")
    if report:
        out.print(f"  report: {report}")


@app.command()
@_guard
def predict(
    model: Annotated[str, typer.Option("--model", "-m", help="Shipped model name or saved-model folder.")],
    inputs: Annotated[list[str], typer.Argument(
        help="Files or folders (DICOM, NIfTI, MetaImage, PNG, JPEG, TIFF, NumPy).")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write results as JSON here.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write results as CSV here.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for output files: masks (NIfTI, DICOM SEG), "
                                                               "overlays (PNG, DICOM SC), crops (PNG).")] = None,
    accept_modality: Annotated[list[str] | None, typer.Option(
        "--accept-modality", help="Also take images of this DICOM modality (repeat for more; 'any': every "
                                  "modality, unchecked) though the model was trained on others.")] = None,
    max_slice_gap: Annotated[float | None, typer.Option(
        "--max-slice-gap", help="Stack DICOM series with gaps up to this many slice steps, filling the missing "
                                "slices, with a warning (default 1.5: none; MEDSIGHT_MAX_SLICE_GAP).")] = None,
    explain: Annotated[str | None, typer.Option(
        "--explain", help="Also draw the explanation (see `medsight explain --help`: auto, gradcam, gradcampp, "
                          "occlusion, probability, findings); the overlays go to --out.")] = None,
    backend: BackendOpt = "torch",
    verbose: Verbose = False,
) -> None:
    """Predict each input; bad inputs are listed with their error and the exit status is 1."""
    from dataclasses import replace

    from medsight.engine.predictor import Predictor
    from medsight.errors import ConfigError
    from medsight.io.limits import ReadLimits
    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task
    from medsight.tasks.writers import OutputFolder, write, write_csv

    _setup_logging(verbose)
    m = load_model(model, backend=backend)
    limits = replace(ReadLimits.from_env(), max_slice_gap=max_slice_gap) if max_slice_gap is not None else None
    if explain is not None and out_dir is None:
        raise ConfigError("--explain writes overlays: give --out DIR")
    results = Predictor(m, get_task(m.task), accept_modalities=accept_modality, limits=limits,
                        explain=explain).predict(inputs)
    if out_dir is not None:
        folder = OutputFolder(out_dir)
        for r in results:
            if r.ok:
                folder.write(r)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps([write(r, "json") for r in results], indent=1))
    if csv_out:
        write_csv(results, csv_out, result_type=get_task(m.task).result_type, model=m)
    _print_results(results, m)
    failed = sum(1 for r in results if not r.ok)
    if failed:
        err.print(f"[yellow]{failed} of {len(results)} input(s) failed[/yellow]")
        raise typer.Exit(1)


@app.command()
@_guard
def batch(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Shipped model name or saved-model folder "
                                                                    "(not needed to join a --db run).")] = None,
    inputs: Annotated[list[str] | None, typer.Argument(help="Files or folders.")] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="A CSV whose 'path' column lists the inputs "
                                                                     "(relative to the CSV).")] = None,
    qido: Annotated[str | None, typer.Option("--qido", help="A QIDO-RS search URL: one input per instance (2D "
                                                            "model) or series (3D) it matches, fetched by WADO-RS. "
                                                            "Credentials: MEDSIGHT_DICOMWEB_TOKEN or _USER/_PASSWORD."
                                             )] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="The JSON-lines results file: made, or resumed (only "
                                                                "the inputs not in it yet are predicted). With --db: "
                                                                "the run's results, written once it is finished.")
                        ] = None,
    db_url: Annotated[str | None, typer.Option("--db", envvar="MEDSIGHT_BATCH_DB", help="The service's database URL: "
                                               "the run's chunks go on its queue and its results into it, so workers "
                                               "on several machines share the run (give the same --run).")] = None,
    run_name: Annotated[str | None, typer.Option("--run", help="With --db: the run's name (start it with --model and "
                                                               "inputs; join it with --run alone).")] = None,
    lease_s: Annotated[float, typer.Option("--lease-s", min=1.0, help="With --db: a dead worker's chunk is taken "
                                                                      "again after this many seconds.")] = 60.0,
    save_list: Annotated[Path | None, typer.Option("--save-list", help="Write the input list as a CSV manifest "
                                                                       "(a rerun with --manifest repeats it).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Processes that predict (one torch thread each)."
                                         )] = 1,
    chunk: Annotated[int | None, typer.Option("--chunk", min=1, help="Inputs read and predicted together (default 64 "
                                                                     "for 2D models, 1 for 3D).")] = None,
    part: Annotated[str | None, typer.Option("--part", help="K/N: this machine's part of the list, every N-th input "
                                                            "from the K-th (run N machines, one output each).")] = None,
    accept_modality: Annotated[list[str] | None, typer.Option(
        "--accept-modality", help="Also take images of this DICOM modality (see predict).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the run's summary as JSON here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    backend: BackendOpt = "torch",
    verbose: Verbose = False,
) -> None:
    """Predict an archive (files, folders, a CSV manifest or a DICOMweb query): inputs read as needed, one
    result per input as it comes, resumable after an interruption, in parallel with --workers, and across
    machines with --part or with --db (the service's queue). Exit status 1 if an input failed."""
    from medsight.errors import ConfigError

    _setup_logging(verbose)
    k_of_n = None
    if part is not None:
        try:
            k, n = (int(x) for x in part.split("/"))
        except ValueError:
            raise ConfigError(f"--part must be K/N (e.g. 2/4); got {part!r}") from None
        k_of_n = (k, n)
    given = bool(inputs or manifest or qido)
    if db_url is None:
        if run_name is not None:
            raise ConfigError("--run names a run in the service's database: give --db URL too")
        if model is None or out_file is None:
            raise ConfigError("give --model and --out (or --db URL --run NAME to work on a shared run)")
    else:
        if part is not None:
            raise ConfigError("--part splits a file run between machines; a --db run is shared by its workers")
        if run_name is None:
            raise ConfigError("--db needs --run NAME: the run that this worker starts or joins")
        if given and model is None:
            raise ConfigError("starting a --db run needs --model")
    names = None
    m = None
    if given:
        from medsight.batch import list_inputs
        from medsight.models.saved import load_model
        from medsight.tasks.base import get_task

        m = load_model(model, backend=backend)
        found: list[str] = []
        if qido:
            from medsight.batch.dicomweb import list_qido

            found = list_qido(qido, per="instance" if m.spatial_dims == 2 else "series")
        names = list_inputs(lambda xs: get_task(m.task).expand_inputs(m, xs), inputs or [], manifest=manifest,
                            part=k_of_n, extra=found)
        if save_list is not None:
            import csv

            save_list.parent.mkdir(parents=True, exist_ok=True)
            with save_list.open("w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["path"])
                w.writerows([n] for n in names)
    elif db_url is None:
        raise ConfigError("no input: give files, folders, --manifest CSV or --qido URL")
    if db_url is None:
        _batch_file(model, names, out_file, m, workers=workers, chunk=chunk, backend=backend,
                    accept_modality=accept_modality, json_out=json_out, quiet=quiet)
    else:
        _batch_db(db_url, run_name, model, names, m, out_file, workers=workers, chunk=chunk, backend=backend,
                  accept_modality=accept_modality, lease_s=lease_s, json_out=json_out, quiet=quiet)


def _bar(quiet: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, disable=quiet)


def _batch_file(model: str, names: list[str], out_file: Path, m: Any, *, workers: int, chunk: int | None,
                backend: str, accept_modality: list[str] | None, json_out: Path | None, quiet: bool) -> None:
    from medsight.batch import run_batch

    with _bar(quiet) as bar:
        task = bar.add_task(f"{m.name}", total=len(names))
        summary = run_batch(model, names, out_file, workers=workers, chunk=chunk, backend=backend,
                            accept_modalities=accept_modality, progress=lambda k: bar.advance(task, k), loaded=m)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(summary.to_dict(), indent=1))
    out.print(f"{summary.n} input(s): {summary.already_done} already in {out_file}, {summary.predicted} predicted in "
              f"{summary.seconds:.1f} s ({summary.images_per_second} per s), {summary.failed} failed; peak memory "
              f"{summary.peak_rss_mb:.0f} MB"
              + ("; a torn last line was cut off and redone" if summary.repaired else "")
              + (f"; {summary.failed_earlier} failed in an earlier run" if summary.failed_earlier else ""))
    if summary.failed or summary.failed_earlier:
        raise typer.Exit(1)


def _batch_db(url: str, run: str, model: str | None, names: list[str] | None, m: Any, out_file: Path | None, *,
              workers: int, chunk: int | None, backend: str, accept_modality: list[str] | None, lease_s: float,
              json_out: Path | None, quiet: bool) -> None:
    import time

    from medsight.service import batch_runs
    from medsight.service.db import Database

    db = Database(url)
    db.create_all()
    t0 = time.perf_counter()
    try:
        added = 0
        if names is not None:
            added = batch_runs.start_run(db, run, model, names, chunk=chunk or (64 if m.spatial_dims == 2 else 1),
                                     backend=backend, accept_modalities=accept_modality)
        before = batch_runs.run_status(db, run)
        with _bar(quiet) as bar:
            task = bar.add_task(f"run {run}", total=before["n"], completed=before["rows"])
            if workers > 1:
                codes = batch_runs.work_in_processes(url, run, workers, lease_s=lease_s,
                                                 progress=lambda k: bar.advance(task, k))
                if any(codes):
                    err.print(f"[yellow]worker exit codes: {codes}[/yellow]")
            else:
                batch_runs.work(db, run, lease_s=lease_s, progress=lambda k: bar.advance(task, k))
        batch_runs.finish_run(db, run)
        status = batch_runs.run_status(db, run)
        summary = {"run": run, "chunks_enqueued_now": added, "rows_before": before["rows"],
                   "rows_by_this_command": status["rows"] - before["rows"], **status,
                   "seconds": round(time.perf_counter() - t0, 3)}
        if out_file is not None and status["rows"] == status["n"]:
            summary["exported"] = batch_runs.export_run(db, run, out_file)
    finally:
        db.dispose()
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(summary, indent=1))
    out.print(f"run {run}: {status['rows']} of {status['n']} input(s) have a result ({summary['rows_by_this_command']} "
              f"stored by this command in {summary['seconds']:.1f} s), {status['rows_failed']} failed"
              + (f"; {status['chunks_failed']} chunk(s) failed" if status["chunks_failed"] else "")
              + (f"; written to {out_file}" if "exported" in summary else ""))
    if status["rows_failed"] or status["rows"] < status["n"]:
        raise typer.Exit(1)


@app.command(name="explain")
@_guard
def explain_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Shipped model name or saved-model folder.")],
    inputs: Annotated[list[str], typer.Argument(help="Files or folders.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for <case>_overlay.png (and a DICOM Secondary "
                                                        "Capture, <case>_overlay.dcm, for a DICOM input).")],
    method: Annotated[str, typer.Option("--method", help="auto (the task's default), or for a classifier gradcam "
                                                         "(MONAI's Grad-CAM, the target layer found automatically), "
                                                         "gradcampp (Grad-CAM++) or occlusion; a segmentation "
                                                         "model: probability (its foreground probability map); a "
                                                         "detector: findings.")]
    = "auto",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results, with how each heatmap was "
                                                                 "made and where it peaks, as JSON here.")] = None,
    verbose: Verbose = False,
) -> None:
    """Explanations drawn on each input (a classifier's heatmap, a segmentation's probability map, a
    detector's findings): predict --explain METHOD --out DIR."""
    predict(model=model, inputs=inputs, json_out=json_out, csv_out=None, out_dir=out_dir, accept_modality=None,
            max_slice_gap=None, explain=method, backend="torch", verbose=verbose)


def _print_results(results: list[Any], model: Any) -> None:
    table = Table(title=f"{model.name} v{model.version}")
    table.add_column("input", overflow="fold")
    table.add_column("result")
    for r in results:
        headline, details = r.summary()
        if not r.ok:
            table.add_row(r.input, f"[red]{headline}[/red]: {details}")
        else:
            table.add_row(r.input, (f"[bold]{headline}[/bold]  " if headline else "") + details)
    out.print(table)


@app.command()
@_guard
def info(
    path: Annotated[Path, typer.Argument(help="File or folder.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the description as JSON here.")] = None,
) -> None:
    """Describe the images or DICOM series in a file or folder, and what was skipped."""
    from medsight.io.info import describe

    d = describe(path)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(d, indent=1))
    table = Table(title=str(path))
    for col in ("modality", "shape", "spacing (mm)", "intensity", "series / source"):
        table.add_column(col, overflow="fold")
    for im in d["images"]:
        name = im.get("series_description") or Path(str(im.get("source") or im.get("series_uid"))).name
        if "error" in im:
            table.add_row(im.get("modality", "?"), "-", "-", "-", f"{name}: [red]{im['error']}[/red]")
            continue
        rng = im.get("intensity_range") or [None, None]
        units = f" {im['units']}" if im.get("units") else ""
        table.add_row(str(im.get("modality")), "x".join(map(str, im.get("shape", []))),
                      " x ".join(f"{s:g}" for s in im.get("spacing_mm", [])),
                      f"{rng[0]:g} .. {rng[1]:g}{units}" if rng[0] is not None else "-", name)
    out.print(table)
    out.print(f"{len(d['images'])} image(s) or series, {len(d['skipped'])} file(s) skipped"
              + (f"; full details in {json_out}" if json_out else "; --json OUT gives UIDs and geometry"))
    for s in d["skipped"]:
        # soft_wrap: no line breaks inserted at the console's width, so a path is never cut in two
        err.print(f"[yellow]skipped[/yellow] {s['file']}: {s['reason']}", highlight=False, soft_wrap=True)


@app.command()
@_guard
def track(
    folder: Annotated[Path, typer.Argument(help="One patient's folder of serial DICOM studies (any layout).")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the time points, response, suggestion "
                                                                 "and reasons as JSON here.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of lesion size over time here.")] = None,
    criteria: Annotated[str, typer.Option("--criteria", help="Response criteria preset: recist-like, rano-like "
                                                             "or volumetric.")] = "recist-like",
    policy: Annotated[str, typer.Option("--policy", help="Suggestion policy preset: default or reference.")]
    = "default",
    mask: Annotated[str | None, typer.Option("--mask", help="Regular expression on SeriesDescription choosing the "
                                                            "mask series when a study has several.")] = None,
    verbose: Verbose = False,
) -> None:
    """Assess the response across one patient's serial studies: sizes over time, category, suggestion."""
    from medsight.response.longitudinal import track as api_track

    _setup_logging(verbose)
    result = api_track(folder, criteria=criteria, policy=policy, mask=mask)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.to_dict(), indent=1, ensure_ascii=False))
    if plot:
        result.plot(plot)
    c = result.criteria
    table = Table(title=f"{folder} ({c.title})")
    for col in ("date", "volume mL", "longest mm", "perp. mm", "lesions used", f"{c.name} {c.unit}", "response"):
        table.add_column(col, overflow="fold", no_wrap=col == "date")
    for t in result.timepoints:
        w = t.measure.whole
        table.add_row(t.study.date or "?", f"{w.volume_ml:.2f}", f"{w.longest_diameter_mm:.1f}",
                      f"{w.perpendicular_diameter_mm:.1f}", f"{len(t.lesions_used)} of {len(t.measure.lesions)}",
                      c.format(t.value).split(" ")[0], t.response or "baseline")
    out.print(table)
    colour = {"progressive disease": "red", "stable disease": "yellow"}.get(result.response or "", "green")
    out.print(f"[bold]response[/bold] ({c.name}): [{colour}]{result.response or 'baseline only'}[/{colour}]")
    out.print(f"[bold]suggestion[/bold] ({result.policy.name}): {result.suggestion}")
    out.print("reasons:")
    for reason in result.reasons:
        out.print(f"  - {reason}", highlight=False, soft_wrap=True)
    for what, path in (("json", json_out), ("plot", plot)):
        if path:
            out.print(f"  {what}: {path}")


@app.command()
@_guard
def calibrate(
    model: Annotated[str, typer.Option("--model", "-m", help="Shipped model name or saved-model folder.")],
    data: Annotated[str, typer.Option("--data", "-d", help="Labelled data with a held-out split (as for evaluate).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Write the calibrated model folder here (may be the "
                                                        "model's own folder).")],
    split: Annotated[str, typer.Option(help="The held-out split the temperature is fitted on.")] = "val",
    verbose: Verbose = False,
) -> None:
    """Fit temperature scaling on a held-out split and re-choose the operating threshold; write the model
    (its stored metrics re-scored on the same data)."""
    from medsight.errors import MedSightError
    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task

    _setup_logging(verbose)
    m = load_model(model)
    task = get_task(m.task)
    calibrated = task.calibrate(m, data, split=split)
    for name in list(calibrated.manifest.get("metrics") or {}):  # the stored metrics describe the stored model
        try:
            ev = task.evaluate(calibrated, data, split=name)
        except MedSightError as exc:
            err.print(f"[yellow]the {name} metrics were not re-scored ({exc}); they are dropped[/yellow]")
            calibrated.manifest["metrics"].pop(name)
            continue
        calibrated.manifest["metrics"][name] = task.headline(ev)
    calibrated.card = task.model_card(calibrated.manifest)
    path = calibrated.save(out_dir)
    c = calibrated.manifest.get("calibration") or {}
    out.print(f"temperature {calibrated.manifest.get('temperature')}; {split} NLL {c.get('nll_before')} → "
              f"{c.get('nll_after')}, ECE {c.get('ece_before')} → {c.get('ece_after')}; threshold "
              f"{calibrated.manifest.get('threshold')}")
    out.print(f"  model: {path}")


@app.command(name="export")
@_guard
def export_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Shipped model name or saved-model folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Write the model folder, with the exported file beside its "
                                                        "weights, here (may be the model's own folder).")],
    fmt: Annotated[str, typer.Option("--format", help="onnx (for ONNX Runtime: --backend onnxruntime) or "
                                                      "torchscript.")] = "onnx",
    verbose: Verbose = False,
) -> None:
    """Export the network as ONNX or TorchScript beside the saved model, its preprocessing and threshold in
    the file's metadata (ONNX) and the file's checksum in the manifest."""
    from medsight.models.export import export_model
    from medsight.models.saved import load_model

    _setup_logging(verbose)
    m = load_model(model)
    path = export_model(m, out_dir, fmt=fmt)
    out.print(f"{m.name} v{m.version} exported as {fmt}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if fmt == "onnx":
        out.print(f"  run it: medsight predict --model {out_dir} --backend onnxruntime INPUT...")


@app.command(context_settings={"allow_extra_args": True})
@_guard
def recommend(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="A model whose task recommends (response).")],
    image: Annotated[str, typer.Option("--image", "-i", help="The patient's image (file or DICOM series folder).")],
    covariates: Annotated[list[str] | None, typer.Option(
        "--covariates", "-c", help="Clinical covariates as KEY=VALUE (repeat, or list them after the first: "
                                   "--covariates age=61 sex=F stage=II).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the recommendation as JSON here.")] = None,
    verbose: Verbose = False,
) -> None:
    """Predicted response under every option, with intervals, and a recommendation or a referral."""
    import medsight
    from medsight.errors import ConfigError

    _setup_logging(verbose)
    values: dict[str, str] = {}
    for item in [*(covariates or []), *ctx.args]:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"covariates are KEY=VALUE; got {item!r}")
        values[key.strip()] = value.strip()
    result = medsight.load(model).recommend(image, values)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.to_dict(), indent=1))
    table = Table(title=f"{result.provenance.model} v{result.provenance.model_version}: {Path(image).name}")
    for col in ("option", "P(response)", "95% interval"):
        table.add_column(col)
    for o in result.options:
        table.add_row(o["treatment"], f"{o['probability']:.3f}", f"{o['interval'][0]:.3f}–{o['interval'][1]:.3f}")
    out.print(table)
    colour = "green" if result.recommended else "yellow"
    out.print(f"[bold]decision[/bold]: [{colour}]{result.recommended or result.status}[/{colour}]")
    out.print("reasons:")
    for reason in result.reasons:
        out.print(f"  - {reason}", highlight=False, soft_wrap=True)
    if json_out:
        out.print(f"  json: {json_out}")


@models_app.command("list")
@_guard
def models_list(task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
                json_out: Annotated[Path | None,
                                    typer.Option("--json", help="Write the lists as JSON here.")] = None) -> None:
    """List registered architectures and shipped models."""
    from medsight.models import get_spec, list_models, list_zoo

    archs = [{"name": n, "tasks": list(get_spec(n).tasks), "dims": list(get_spec(n).dims),
              "description": get_spec(n).description} for n in list_models(task=task)]
    zoo = [z for z in list_zoo() if task is None or z["task"] == task]
    if json_out:
        json_out.write_text(json.dumps({"architectures": archs, "shipped": zoo}, indent=1))
    t = Table(title="architectures")
    for c in ("name", "tasks", "dims", "description"):
        t.add_column(c)
    for a in archs:
        t.add_row(a["name"], ", ".join(a["tasks"]), "/".join(f"{d}D" for d in a["dims"]), a["description"])
    out.print(t)
    z = Table(title="shipped models")
    for c in ("name", "task", "version", "labels", "test metrics"):
        z.add_column(c)
    for m in zoo:
        metrics = ", ".join(f"{k} {v}" for k, v in m["metrics"].items() if k in ("auc", "accuracy", "dice"))
        z.add_row(m["name"], m["task"], m["version"], ", ".join(m["labels"] or []), metrics)
    out.print(z)


@app.command()
@_guard
def serve(config: Annotated[Path, typer.Option("--config", "-c", help="Service YAML config.")],
          verbose: Verbose = False) -> None:
    """Start the real-time service (DICOM receiver, HTTP API, workers)."""
    _setup_logging(verbose)
    try:
        from medsight.service.runner import serve as run_service
    except ImportError as exc:
        from medsight.errors import ConfigError

        raise ConfigError(f"the service needs the 'service' extra: pip install 'medsight[service]' ({exc})") from None
    run_service(config)


@app.command()
def version() -> None:
    """Print MedSight's version."""
    import medsight

    out.print(medsight.__version__)


def run() -> None:
    """Console-script entry point."""
    # OpenMP threads that spin while waiting make every torch process on a busy machine
    # (CI, a hospital server running the service) many times slower; sleeping threads cost
    # little when the machine is idle. Set before torch is imported; an explicit value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        app()
    except SystemExit as exc:
        sys.exit(exc.code)
