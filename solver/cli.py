"""The `tplan` command line: solve, check, catalog, and the one error boundary around them.

Exit codes: 0 yes, 1 no (infeasible goal or a failing config), 2 bad input (the message
names the file, the place and what was expected), 3 anything unexpected (one line, never a
traceback), 130 interrupted (nothing written).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from pathlib import Path

import click

from . import catalog as catalogs
from . import plot
from .api import check as check_config, plan_goal
from . import emit
from .emit import deepspeed, huggingface, launch as launchers
from .emit.run import Run
from .errors import InputError
from .emit.readback import engine_of
from .explain import report, trade_off_table
from .load import STDIN, read
from .stages import Staged
from .write import check_targets, write_all

TEAM_PACK = "tplan-rules.yaml"  # a repo-local pack picked up from the working directory
EXIT_NO, EXIT_BAD_INPUT, EXIT_UNEXPECTED, EXIT_INTERRUPTED = 1, 2, 3, 130


def run(argv: list[str] | None = None) -> None:
    """The console entry point: every outcome becomes an exit code and at most one line on stderr."""
    try:
        code = main.main(args=argv, prog_name="tplan", standalone_mode=False)
    except InputError as error:
        code = _fail(str(error), EXIT_BAD_INPUT)
    except click.ClickException as error:  # usage errors: unknown option, bad option value
        code = _fail(error.format_message(), EXIT_BAD_INPUT)
    except (KeyboardInterrupt, click.exceptions.Abort):
        code = _fail("interrupted; nothing was written", EXIT_INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - the boundary: anything else is a bug, reported in one line
        code = _fail(f"internal error ({error.__class__.__name__}: {_shorten(str(error))}); "
                     f"please report it with the input that caused it", EXIT_UNEXPECTED)
    sys.exit(code or 0)


def _fail(message: str, code: int) -> int:
    click.echo(f"tplan: error: {' '.join(message.split())}", err=True)
    return code


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class Commands(click.Group):
    """A command group that suggests the nearest command for a misspelt one."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            near = difflib.get_close_matches(args[0], self.commands, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise click.UsageError(f"no command {args[0]!r}{hint} (commands: {', '.join(self.commands)})", ctx)
        return super().resolve_command(ctx, args)


def _print_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _json_text(data: dict) -> str:
    return json.dumps(data, indent=2) + "\n"


def _team_packs(rules: tuple[str, ...]) -> tuple[str, ...]:
    """--rules packs, plus tplan-rules.yaml in the working directory when present."""
    local = (TEAM_PACK,) if Path(TEAM_PACK).is_file() else ()
    return local + tuple(rules)


RULES_OPTION = click.option("--rules", multiple=True, type=click.Path(),
                            help=f"Extra rule pack (repeatable); ./{TEAM_PACK} is always added when present.")


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tplan")
def main():
    """Will a training run fit, how long will it take, and which settings are fastest."""


@main.command()
@click.argument("goal", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the answer as one JSON object.")
@click.option("--time-limit", type=click.FloatRange(min=0.01), default=60.0, show_default=True,
              help="Seconds the whole command may spend searching (CP-SAT itself stops at a deterministic "
                   "work limit, so answers do not depend on the machine unless this cuts them short).")
@click.option("--explain/--no-explain", default=True, show_default=True,
              help="Find binding rules (a plan) or suggestions (no plan); costs extra solves.")
@click.option("--deepspeed", "deepspeed_out", type=click.Path(),
              help="Write the plan's DeepSpeed JSON (with --hf-args: \"auto\" where the Trainer fills values in).")
@click.option("--hf-args", "hf_out", type=click.Path(),
              help="Write the TRL SFT config (Hugging Face TrainingArguments + SFTConfig + ModelConfig keys, what "
                   "`trl sft --config FILE` reads) as YAML or JSON by its suffix.")
@click.option("--emit", "targets", multiple=True, metavar="TARGET",
              help=f"Write the files an engine runs, in OUTPUT/TARGET/ (repeatable or comma-separated): "
                   f"{', '.join(emit.TARGETS)}. The search keeps to what the engine runs.")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Folder for --emit's files.")
@click.option("--launch", is_flag=True, help="Print the launch line (on stderr with --json).")
@click.option("--pareto", is_flag=True,
              help="Also list the plans no other beats on time, memory per GPU and cost at once (more solves).")
@click.option("--plot", "plot_out", type=click.Path(),
              help="Draw those trade-off plans (time, memory, cost; the plan answered marked) as FILE.svg or .png "
                   "(implies --pareto; needs matplotlib: pip install 'tplan[plot]').")
@RULES_OPTION
def solve(goal, as_json, time_limit, explain, deepspeed_out, hf_out, targets, output, launch, pareto, plot_out,
          rules):
    """Find the fastest configuration of GOAL (a file, or - for standard input) that fits its GPUs and deadline."""
    from .search import Budget  # OR-Tools loads only when a goal is solved

    budget = Budget(time_limit)  # the whole command, loading included
    targets = _targets(targets, output)
    files_out = [path for path in (deepspeed_out, hf_out, plot_out) if path]
    engines = list(dict.fromkeys(targets + (["hf"] if hf_out else ["deepspeed"] if deepspeed_out else [])))
    if plot_out:
        plot.check_target(plot_out)
    narrowed: list[str] = []

    def prepare(problem):
        check_targets(files_out, problem.sources)
        narrowed[:] = emit.restrict(problem, engines)
        if hf_out and not deepspeed_out:  # the Trainer runs ZeRO and offload only from a DeepSpeed JSON
            narrowed.extend(emit.narrow(problem, {"zero_stage": (0,), "offload": ("none",)},
                                        "--hf-args without --deepspeed"))

    planned = plan_goal(goal, _team_packs(rules), budget, explain, prepare=prepare, pareto=pareto or bool(plot_out))
    if isinstance(planned, Staged):
        return _staged(planned, goal, as_json, files_out or launch, targets, output)
    problem, plan, choices = planned.problem, planned.plan, planned.gpu_choices
    hints = [repair.text for repair in planned.repairs]
    written = []
    if plan.assessment is not None:
        contents = _single_files(problem, plan.assessment, deepspeed_out, hf_out)
        contents.update(_engine_files([(problem, plan.assessment, output)], targets))
        if plot_out:
            contents[plot_out] = plot.figure(plot_out, planned.pareto, plan.assessment)
        check_targets(list(contents), problem.sources)
        write_all(contents)
        written = list(contents)
        if launch:
            click.echo(_launch_line(problem, plan.assessment, deepspeed_out), err=as_json)
    restricted = f"kept to what {', '.join(engines)} run{'s' if len(engines) == 1 else ''}: " \
                 f"{', '.join(narrowed)}" if narrowed else None
    if as_json:
        answer = planned.answer()
        if engines:
            answer["emitted"] = {"targets": engines, "files": written, "restricted": narrowed}
        _print_json(answer)
    else:
        click.echo(report(problem, plan.status, plan.assessment, plan.binding, plan.conflict, hints,
                          plan.solve_seconds, choices, plan.binding_details, plan.runner_up, plan.gap))
        if restricted:
            click.echo(f"Search {restricted}.")
        if planned.pareto is not None:
            click.echo(trade_off_table(planned.pareto, planned.pareto_complete))
        if plan.status == "unknown":
            click.echo(f"No plan found within the search limits (--time-limit {time_limit:g} s, and CP-SAT's "
                       f"deterministic work limit); raise --time-limit or narrow the knobs.")
    for path in written:
        click.echo(f"wrote {path}", err=True)
    if plan.assessment is None and (files_out or targets):
        click.echo("no plan: no file written", err=True)
    return 0 if plan.assessment is not None else EXIT_NO


def _targets(targets: tuple[str, ...], output: str | None) -> list[str]:
    """--emit's targets (repeated or comma-separated), each known, with the folder they go to."""
    names = list(dict.fromkeys(name.strip() for given in targets for name in given.split(",") if name.strip()))
    for name in names:
        if name not in emit.TARGETS:
            raise click.BadParameter(f"{name!r} is not one of {', '.join(emit.TARGETS)}", param_hint="--emit")
    if names and not output:
        raise click.UsageError("--emit: expected -o/--output DIR, the folder its files go under")
    if output and not names:
        raise click.UsageError("-o/--output: expected --emit TARGET beside it (it is the folder for --emit's files)")
    return names


def _engine_files(plans: list[tuple], targets: list[str]) -> dict:
    """--emit's files of each (problem, plan, folder), in FOLDER/TARGET/ (made here: the plans exist)."""
    contents = {}
    for problem, plan, folder in plans if targets else ():
        contents.update(emit.files(problem, plan, targets, folder))
    for path in contents:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return contents


def _single_files(problem, plan, deepspeed_out: str | None, hf_out: str | None) -> dict:
    """--deepspeed FILE and --hf-args FILE: one DeepSpeed JSON and one TRL config (naming each other)."""
    run = Run.of(problem, plan)
    contents = {}
    if deepspeed_out:
        contents[deepspeed_out] = emit.text(".json", deepspeed.config(run, trainer=bool(hf_out)))
    if hf_out:
        named = os.path.relpath(deepspeed_out, Path(hf_out).parent) if deepspeed_out else None
        contents[hf_out] = emit.text(hf_out, huggingface.arguments(run, named))
    return contents


def _launch_line(problem, plan, deepspeed_out: str | None) -> str:
    """The command that starts the plan: the deepspeed launcher where it uses ZeRO, else torchrun."""
    run = Run.of(problem, plan)
    if deepspeed.used(run):
        words = deepspeed.command(run, deepspeed_out or "ds_config.json")
    else:
        words = launchers.torchrun(run) + [deepspeed.SCRIPT]
    return launchers.line(words)


def _staged(staged: Staged, goal: str, as_json: bool, single_files, targets: list[str], output: str | None) -> int:
    """A goal with stages: each stage's plan and the totals; --emit writes each stage's files in
    OUTPUT/STAGE/TARGET/ (one DeepSpeed JSON or launch line cannot hold several stages)."""
    if single_files:
        raise InputError(goal, "stages", "--deepspeed, --hf-args and --launch on a goal without stages "
                                         "(--emit TARGET -o DIR writes each stage's files in DIR/STAGE/TARGET/)")
    written = []
    if targets and staged.totals() is not None and not staged.conflict:
        contents = _engine_files([(planned.problem, planned.plan.assessment,
                                   str(Path(output) / re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")))
                                  for name, planned in staged.stages], targets)
        check_targets(list(contents), [planned.problem.file for _, planned in staged.stages])
        write_all(contents)
        written = list(contents)
    if as_json:
        answer = staged.answer()
        if targets:
            answer["emitted"] = {"targets": targets, "files": written}
        _print_json(answer)
    else:
        click.echo(staged.text())
    for path in written:
        click.echo(f"wrote {path}", err=True)
    return 0 if staged.totals() is not None and not staged.conflict else EXIT_NO


@main.command()
@click.argument("configs", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list with one object per config checked (its file, then the answer's keys), "
                   "whatever the number of files.")
@click.option("--goal", type=click.Path(),
              help="Goal YAML giving the hardware and data (and the model, where a file names none) for "
                   "engine configs; default: NAME.tplan.yaml beside each.")
@click.option("--skip-unknown", is_flag=True,
              help="Skip files that are neither tplan configs nor engine configs, and tplan goals (knob lists): "
                   "the pre-commit hook passes every YAML, JSON and TOML file.")
@RULES_OPTION
def check(configs, as_json, goal, skip_unknown, rules):
    """Check CONFIGS (tplan configs, or DeepSpeed JSON, Trainer/TRL arguments, accelerate, axolotl,
    torchtitan or torchtune configs; - for standard input) against every rule; exit 1 on a violation."""
    documents = {}
    for path in dict.fromkeys(_checked_file(path) for path in configs):
        document = _config_document(path, goal) if skip_unknown else read(path)
        if document is not None:
            documents[path] = document
    answers = [check_config(document, rules=_team_packs(rules), goal=goal) for document in documents.values()]
    if as_json:
        _print_json([{"file": path, **result.to_dict()} for path, result in zip(documents, answers)])
    else:
        for path, result in zip(documents, answers):
            for violation in result.violations:
                click.echo(f"{path}: {violation['rule']}: {violation['message']}"
                           + (" (warning)" if violation["severity"] != "error" else ""))
            click.echo(f"{path}: {result.status}")
    failed = any(not result.ok for result in answers)
    return EXIT_NO if failed else 0


def _config_document(path: str, goal: str | None):
    """The file read, if the hook should check it: an engine's config or a tplan config; None for a
    goal file, the --goal itself and other YAML, JSON or TOML."""
    if path != STDIN and goal and Path(path).resolve() == Path(goal).resolve():
        return None
    try:
        document = read(path)
    except InputError:
        if Path(path).name.endswith(".tplan.yaml"):  # a broken tplan config is reported, not skipped
            raise
        return None
    if path == STDIN or engine_of(document) is not None:
        return document
    data = document.data
    is_config = isinstance(data, dict) and "hardware" in data and "stages" not in data and \
        not any(isinstance(value, list) for value in (data.get("knobs") or {}).values())
    return document if is_config else None


def _checked_file(path: str) -> str:
    """NAME.tplan.yaml beside an engine's NAME.json/.yaml/.toml is that file's side file (its model,
    data and hardware): checked alone it would be a goal with default knobs, so the engine's file is
    checked with it."""
    suffix = ".tplan.yaml"
    if not path.endswith(suffix):
        return path
    for extension in (".json", ".yaml", ".yml", ".toml"):
        engine_file = path[: -len(suffix)] + extension
        if Path(engine_file).is_file() and engine_of(read(engine_file)) is not None:
            return engine_file
    return path


@main.command()
@click.argument("kind", type=click.Choice(["gpus", "models"]))
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
def catalog(kind, as_json):
    """List the GPU or model catalog with its figures."""
    if kind == "gpus":
        entries = catalogs.gpus()
        rows = [f"{key:<24}{entry['memory_gib']:>7} GiB  bf16 {entry['peak_tflops']['bf16']:>7} TFLOP/s  "
                f"{entry['name']}" for key, entry in entries.items()]
    else:
        entries = {key: {**entry, "params": catalogs.count_params(entry)} for key, entry in catalogs.models().items()}
        rows = [f"{key:<24}{entry['params'] / 1e9:>8.3f} B params  {entry.get('hf_id', '')}"
                for key, entry in entries.items()]
    if as_json:
        _print_json(entries)
    else:
        click.echo("\n".join(rows))


@main.command()
@click.argument("measurements", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", type=click.Path(), help="Write the calibration pack here (default: print it).")
@click.option("--use", type=click.Choice(["training", "held-out"]),
              help="Fit only the files marked with this `use` (the shipped data marks its training sources).")
@click.option("--json", "as_json", is_flag=True, help="Print the fitted constants and each run's error as JSON.")
@RULES_OPTION
def calibrate(measurements, output, use, as_json, rules):
    """Fit the time model's free constants to MEASUREMENTS (runs with measured speed) as a rule pack."""
    from . import calibrate as calibration

    runs = calibration.read_runs(measurements, _team_packs(rules), use)
    check_targets([output] if output else [], tuple(measurements))
    constants = calibration.fit(runs)
    text = calibration.pack_text(constants, runs)
    if output:
        write_all({output: text})
    fitted = calibration.summary(runs, constants)
    if as_json:
        _print_json({"constants": constants, **fitted,
                     "errors": {run.id: error for run, error in zip(runs, calibration.errors(runs, constants))}})
    elif not output:
        click.echo(text, nl=False)
    if output and not as_json:
        click.echo(f"{output}: {fitted['runs']} runs, median |error| {fitted['median']:.1%}, "
                   f"worst {fitted['worst']:.1%}")
