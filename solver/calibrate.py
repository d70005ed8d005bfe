"""Calibration: fit the time pack's free constants to measured runs, as a rule pack a goal can use.

A measurements file (schemas/measurements.schema.json; the shipped ones are data/measured/*.yaml)
lists runs, each a goal's model and hardware, the knobs it ran with and the speed it measured.
Every run becomes a pinned tplan config whose tokens/s the evaluator predicts; the fit chooses
the FITTED constants that minimise the mean absolute log error, each source weighted equally
(one project's hundred rows do not outvote another's ten). Everything else the time model uses
stays as its pack states it, with its own source.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import expr
from .errors import InputError
from .evaluate import Evaluator
from .goal import Problem, load_problem
from .load import Document, read
from .validate import validate

# The constants a calibration fits, each with the range it may take and whether it is searched on
# a log scale (a work size spans decades; a fraction does not).
FITTED = {
    "matmul_efficiency": (0.2, 1.0, False),
    "matmul_half_width": (1.0, 1e5, True),
    "collective_hop_seconds": (1e-6, 1e-4, False),
}
PREDICTED = "tokens_per_second"
ITERATIONS = 400          # Nelder-Mead steps per start at most; the fit is deterministic (no random start)
TOLERANCE = 1e-5          # stop when the simplex's losses (mean |log error|) agree this closely
START_FRACTIONS = (0.25, 0.75)  # start where each constant is this far along its range (never at the packs' values)


@dataclass(frozen=True)
class Run:
    """One measured run: its problem (every knob pinned), the config and the measured tokens/s."""

    id: str
    source: str
    use: str
    file: str
    gpu: str
    note: str
    problem: Problem
    config: dict
    measured: float                 # tokens per second of the whole job
    static: dict                    # derived values that no fitted constant changes
    peak_memory: dict | None        # {gib, counts} where the run logged its peak memory


def read_runs(paths, extra_rules: tuple = (), use: str | None = None) -> list[Run]:
    """Every run of the measurement files (those marked ``use`` only, when given)."""
    runs = []
    for path in paths:
        document = read(path)
        validate(document, "measurements")
        source = document.data.get("source_id", Path(str(path)).stem)
        file_use = document.data.get("use", "training")
        if use and file_use != use:
            continue
        runs += [_run(document, index, source, file_use, extra_rules) for index in range(len(document.data["runs"]))]
    if not runs:
        raise InputError(str(paths[0]) if paths else "<none>", "", f"at least one run{f' of use {use}' if use else ''}")
    return runs


def _run(document: Document, index: int, source: str, use: str, extra_rules: tuple) -> Run:
    spec = document.data["runs"][index]
    config_doc = _config_document(document, index)
    problem = load_problem(config_doc, pinned=True, extra_rules=extra_rules)
    config = {knob: values[0] for knob, values in problem.domains.items()}
    assessment = problem.evaluator().assess(config)
    _check_exists(problem, assessment, document, index)
    varying = _reading(problem.rules, set(FITTED))
    static = {name: assessment.values[name] for name in problem.rules.order if name not in varying}
    measured = _tokens_per_second(spec["measured"], config["gpus"], static)
    return Run(spec["id"], source, use, document.path, str(spec["goal"]["hardware"]["gpu"]).lower(),
               spec.get("note", ""), problem, config, measured, static, spec["measured"].get("peak_memory"))


def _check_exists(problem: Problem, assessment, document: Document, index: int) -> None:
    """A run that ran is a combination that exists: one breaking a rule that defines which
    configurations exist (relaxable: false, e.g. fp8 over a quantised base) is bad input, not a run
    to fit. Rules a run may break and still have run (it does not fit, or is slow) are left to the fit."""
    defining = {rule.id for rule in problem.rules.constraints if not rule.relaxable}
    for violation in assessment.violations:
        if violation.rule in defining:
            raise InputError(document.path, document.where(("runs", index)),
                             f"settings that exist together ({violation.rule}: {violation.message})")


def _config_document(document: Document, index: int) -> Document:
    """The run as a tplan config (a goal with every knob pinned), its lines those of the measurement file."""
    spec = document.data["runs"][index]
    hardware = spec["goal"]["hardware"]
    knobs = {"gpus": hardware.get("gpus_per_node", 1) * hardware.get("nodes", 1), **spec["config"]}
    data = {"task": "pretrain", **spec["goal"], "data": {"tokens": 1e9}, "knobs": knobs}
    prefix = ("runs", index)
    lines = {(): document.lines.get(prefix, 0)}
    for key_path, line in document.lines.items():
        if key_path[:3] == (*prefix, "goal"):
            lines[key_path[3:]] = line
        elif key_path[:3] == (*prefix, "config"):
            lines[("knobs", *key_path[3:])] = line
    return Document(document.path, data, lines)


def _reading(rules, constants: set) -> set:
    """Derived names whose value depends on any of ``constants``."""
    reading = set()
    for name in rules.order:  # dependencies first
        if expr.names(rules.derived[name]) & (constants | reading):
            reading.add(name)
    return reading


def _tokens_per_second(measured: dict, gpus: int, values: dict) -> float:
    """The measured speed as tokens/s of the whole job."""
    kind, amount = next((kind, amount) for kind, amount in measured.items() if kind != "peak_memory")
    if kind == "tokens_per_second_per_gpu":
        return amount * gpus
    if kind == "step_seconds":
        return values["tokens_per_step"] / amount
    if kind == "model_tflops_per_gpu":
        return amount * 1e12 * gpus / values["model_flops_per_token"]
    return amount


def predict(run: Run, constants: dict) -> float:
    """tokens/s the time model gives ``run`` with ``constants`` in place of the packs' values."""
    problem = run.problem
    evaluator = Evaluator(problem.rules, {**problem.rules.params, **problem.inputs, **constants},
                          {**problem.rules.tables, **problem.input_tables})
    return evaluator.name(PREDICTED, run.config, dict(run.static))


def errors(runs: list[Run], constants: dict) -> list[float]:
    """Relative error of each run's prediction, (predicted - measured) / measured."""
    return [predict(run, constants) / run.measured - 1 for run in runs]


def fit(runs: list[Run]) -> dict:
    """The FITTED constants that minimise the source-weighted mean |log(predicted / measured)|."""
    by_source: dict[str, list[Run]] = {}
    for run in runs:
        by_source.setdefault(run.source, []).append(run)

    def loss(point: list[float]) -> float:
        constants = _constants(point)
        return sum(statistics.fmean(abs(math.log(predict(run, constants) / run.measured)) for run in group)
                   for group in by_source.values()) / len(by_source)

    best = min((_nelder_mead(loss, [fraction] * len(FITTED)) for fraction in START_FRACTIONS), key=lambda pair: pair[0])
    best = _nelder_mead(loss, best[1])   # restart from the best point with a fresh simplex
    return _constants(best[1])


def _constants(point: list[float]) -> dict:
    """Search coordinates - each constant's place in its range, 0 at the low end and 1 at the high end
    (on a log scale where FITTED says so) - back to constants, clamped into their ranges."""
    constants = {}
    for (name, (low, high, log)), x in zip(FITTED.items(), point):
        x = min(max(x, 0.0), 1.0)
        constants[name] = low ** (1 - x) * high ** x if log else low + x * (high - low)
    return constants


def _nelder_mead(loss, start: list[float]) -> list[float]:
    """Minimise ``loss`` from ``start`` (Nelder and Mead 1965, standard coefficients), with a first
    simplex a tenth of each range wide."""
    simplex = [start] + [[x + (0.1 if i == j else 0) for j, x in enumerate(start)] for i in range(len(start))]
    scored = sorted((loss(point), point) for point in simplex)
    for _ in range(ITERATIONS):
        (best_loss, best), (worst_loss, worst) = scored[0], scored[-1]
        centroid = [statistics.fmean(coords) for coords in zip(*(point for _, point in scored[:-1]))]
        reflected = [c + (c - w) for c, w in zip(centroid, worst)]
        reflected_loss = loss(reflected)
        if reflected_loss < best_loss:
            expanded = [c + 2 * (c - w) for c, w in zip(centroid, worst)]
            expanded_loss = loss(expanded)
            scored[-1] = (expanded_loss, expanded) if expanded_loss < reflected_loss else (reflected_loss, reflected)
        elif reflected_loss < scored[-2][0]:
            scored[-1] = (reflected_loss, reflected)
        else:
            contracted = [c + 0.5 * (w - c) for c, w in zip(centroid, worst)]
            contracted_loss = loss(contracted)
            if contracted_loss < worst_loss:
                scored[-1] = (contracted_loss, contracted)
            else:
                scored = [scored[0]] + [(loss(shrunk), shrunk) for shrunk in
                                        ([b + 0.5 * (x - b) for b, x in zip(best, point)] for _, point in scored[1:])]
        scored.sort()
        if scored[-1][0] - scored[0][0] < TOLERANCE:
            break
    return scored[0]


def summary(runs: list[Run], constants: dict) -> dict:
    """Median and worst |relative error| of the runs under ``constants``."""
    relative = [abs(error) for error in errors(runs, constants)]
    return {"runs": len(runs), "median": statistics.median(relative), "worst": max(relative)}


def pack_text(constants: dict, runs: list[Run]) -> str:
    """A rule pack that sets the fitted constants, saying what they were fitted to and how well."""
    fitted = summary(runs, constants)
    files = sorted({Path(run.file).name for run in runs})
    sources = sorted({run.source for run in runs})
    note = (f"fitted by tplan calibrate to {fitted['runs']} runs of {', '.join(sources)} ({', '.join(files)}): "
            f"median |error| {fitted['median']:.1%}, worst {fitted['worst']:.1%}")
    rules = runs[0].problem.rules
    params = {name: {"value": _rounded(value, type(rules.params[name])), "source": note} for name, value in constants.items()}
    header = ("# Written by `tplan calibrate`: the time pack's fitted constants for the runs below.\n"
              "# Use it from a goal (rules: [this file]) or with --rules.\n")
    return header + yaml.safe_dump({"pack": "calibration", "description": note, "params": params},
                                   sort_keys=False, width=100)


def _rounded(value: float, kind: type):
    """Four significant digits; an integer param stays an integer."""
    number = float(f"{value:.4g}")
    return int(round(number)) if kind is int else number
