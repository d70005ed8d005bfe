"""Explain an answer: the JSON object of the contract and the human report (the re-solves
behind suggestions and repairs live in repair.py)."""

from __future__ import annotations

import math

from .evaluate import Assessment, format_value
from .goal import Problem

ESTIMATE = {"params": "model.params", "trainable_params": "trainable_params",
            "memory_per_gpu_bytes": "memory_per_gpu", "cpu_memory_bytes": "cpu_memory",
            "tokens_per_second": "tokens_per_second", "train_seconds": "train_seconds",
            "model_flops_utilization": "model_flops_utilization", "gpu_hours": "gpu_hours",
            "global_batch_sequences": "sequences_per_step", "tokens_per_step": "tokens_per_step",
            "training_tokens": "training_tokens",
            "optimizer_steps": "steps"}
BREAKDOWN = {"weights": "weight_memory", "gradients": "gradient_memory", "optimizer": "optimizer_memory",
             "activations": "activation_memory", "other": "other_memory"}


def estimate(problem: Problem, assessment: Assessment) -> dict:
    values = {**problem.inputs, **assessment.values}
    result = {key: json_number(values[name]) for key, name in ESTIMATE.items()}
    result["memory_breakdown_bytes"] = {key: json_number(values[name]) for key, name in BREAKDOWN.items()}
    if values["hardware.price_per_gpu_hour"] > 0:  # money, in the goal's currency per GPU-hour
        result["cost"] = json_number(values["cost"])
    return result


def json_number(value):
    """A figure as the JSON contract writes it: large ones as integers, null for infinity."""
    number = float(value)
    if not math.isfinite(number):
        return None  # JSON has no infinity: an unbounded quantity is null
    return round(number) if abs(number) >= 1e3 and number.is_integer() or abs(number) >= 1e6 else number


def config_json(problem: Problem, assessment: Assessment) -> dict:
    """The knobs, then what they imply: the data-parallel degree, the GPU and the nodes the plan uses."""
    config = dict(assessment.config)
    config["dp"] = round(assessment.values["dp"])
    config["gpu"] = problem.inputs["gpu.id"]
    config["nodes"] = -(-config["gpus"] // problem.inputs["hardware.gpus_per_node"])
    return config


def answer(problem: Problem, status: str, assessment: Assessment | None, binding=(), conflict=(),
           suggestions=(), gpu_choices=(), details=(), runner_up: Assessment | None = None,
           gap: float | None = None) -> dict:
    """The JSON object printed by `solve --json` and `check --json`; ``details`` (search.Binding per
    binding rule) and ``runner_up`` add `binding_details` and `runner_up` to a plan's answer, ``gap``
    (a feasible plan's proven distance from the best) adds `gap`."""
    result = {"status": status,
              "config": config_json(problem, assessment) if assessment else None,
              "estimate": estimate(problem, assessment) if assessment else None,
              "violations": [{"rule": v.rule, "message": v.message, "severity": v.severity}
                             for v in (assessment.violations if assessment else [])],
              "binding": list(binding), "conflict": list(conflict)}
    if gap is not None:
        result["gap"] = json_number(gap)
    if details:
        result["binding_details"] = [binding.to_dict() for binding in details]
    if runner_up is not None:
        result["runner_up"] = {"config": config_json(problem, runner_up), "estimate": estimate(problem, runner_up)}
    if suggestions:
        result["suggestions"] = list(suggestions)
    if gpu_choices:  # a goal that lists several GPUs: each one's best plan by the objective
        result["gpu_choices"] = [{**choice, problem.objective_name: json_number(choice[problem.objective_name])
                                  if choice[problem.objective_name] is not None else None} for choice in gpu_choices]
    return result


def changed_knobs(config: dict, other: dict) -> str:
    """The knobs ``other`` changes from ``config``, as `knob value`."""
    return knob_text({knob: value for knob, value in other.items() if value != config[knob]})


def knob_text(config: dict) -> str:
    return ", ".join(f"{key} {format_value(value)}" for key, value in config.items())


_FORMATS = {"time": "time", "memory": "bytes"}   # how each objective's value prints (cost: a number)


def report(problem: Problem, status: str, assessment: Assessment | None, binding=(), conflict=(),
           suggestions=(), solve_seconds: float | None = None, gpu_choices=(), details=(),
           runner_up: Assessment | None = None, gap: float | None = None) -> str:
    """The human report: chosen knobs, memory per GPU against capacity, time against deadline."""
    inputs = problem.inputs
    used = assessment.config["gpus"] if assessment is not None else inputs["hardware.total_gpus"]
    offered = f" of {inputs['hardware.total_gpus']}" if used != inputs["hardware.total_gpus"] else ""
    lines = [f"tplan: {problem.model_name} ({format_value(inputs['model.params'])} params) on "
             f"{used}{offered} x {problem.gpu_name} -- {status}"
             + (f", proven within {100 * gap:.2g}% of the best" if gap is not None else "")
             + (f" (CP-SAT, {solve_seconds:.2f} s)" if solve_seconds is not None else "")]
    if gpu_choices:
        lines.append(f"GPUs compared by {problem.objective_name}: " + ", ".join(
            f"{choice['gpu']} " + (format_value(choice[problem.objective_name], _FORMATS.get(problem.objective_name))
                                   if choice[problem.objective_name] is not None else choice["status"])
            for choice in gpu_choices))
    if assessment is not None:
        values = assessment.values
        config = assessment.config
        lines.append("")
        lines.append("  " + "  ".join(f"{key} {format_value(value)}" for key, value in config.items()))
        lines.append(f"  gpus {config['gpus']} = dp {round(values['dp'])} x tp {config['tp']} x pp {config['pp']}"
                     + (f" x cp {config['cp']}" if config["cp"] > 1 else "")
                     + (f" (interleaved, {config['vp']} virtual stages per GPU)" if config["vp"] > 1 else ""))
        capacity = inputs["gpu.memory_bytes"]
        lines.append("")
        lines.append(f"Memory per GPU  {format_value(values['memory_per_gpu'], 'bytes')} of "
                     f"{format_value(capacity, 'bytes')} ({100 * values['memory_per_gpu'] / capacity:.0f}%)")
        for label, name in BREAKDOWN.items():
            share = values[name] / capacity
            lines.append(f"  {label:<12}{format_value(values[name], 'bytes'):>11}  {'#' * round(40 * min(share, 1))}")
        if values["cpu_memory"] > 0:
            lines.append(f"  host memory per node for offload: {format_value(values['cpu_memory'], 'bytes')}")
        deadline = inputs["goal.deadline_seconds"]
        lines.append("")
        lines.append(f"Batch  {format_value(values['sequences_per_step'], 'int')} sequences x {config['context']:,} tokens = "
                     f"{format_value(values['tokens_per_step'], 'int')} tokens per optimizer step "
                     f"({'as the config runs' if inputs['data.batch_from_config'] else inputs['data.batch_source']}), "
                     f"{format_value(values['steps'], 'int')} optimizer steps")
        lines.append(f"Time  {format_value(values['train_seconds'], 'time')} for "
                     f"{format_value(values['training_tokens'])} tokens at {format_value(values['tokens_per_second'], 'int')}"
                     f" tokens/s, MFU {format_value(values['model_flops_utilization'], 'pct')}, "
                     f"{format_value(values['gpu_hours'])} GPU-hours"
                     + (f", cost {format_value(values['cost'])} at {format_value(inputs['hardware.price_per_gpu_hour'])}"
                        f" per GPU-hour ({inputs['hardware.price_source']})" if inputs["hardware.price_per_gpu_hour"] > 0
                        else "")
                     + (f" (deadline {format_value(deadline, 'time')})" if deadline else ""))
        for violation in assessment.violations:
            lines.append(f"  {violation.severity}: {violation.rule}: {violation.message}")
    if details:
        lines.append("Binding rules (each stops a better plan one knob away):")
        better = {"time": "faster", "cost": "cheaper", "memory": "smaller"}.get(problem.objective_name, "better")
        for binding in details:
            room = f"{format_value(binding.headroom, 'pct')} headroom: " if binding.headroom is not None else ""
            gain = binding.blocked["better"]
            lines.append(f"  {binding.rule} - {room}{binding.now}")
            lines.append(f"    {binding.blocked['change']} would be "
                         + (f"{format_value(gain, 'pct')} {better}" if gain is not None else better)
                         + f", but {binding.blocked['breaks']}")
    elif binding:
        lines.append(f"Binding rules (they stop a better plan one knob away): {', '.join(binding)}")
    if runner_up is not None and assessment is not None:
        objective = problem.objective
        change = changed_knobs(assessment.config, runner_up.config)
        worse = runner_up.values[objective] / assessment.values[objective] - 1 if assessment.values[objective] else 0
        lines.append(f"Runner-up (the next best plan one knob away): {change}: "
                     f"{format_value(runner_up.values[objective], _FORMATS.get(problem.objective_name))} "
                     f"({'+' if worse >= 0 else ''}{format_value(worse, 'pct')})")
    if conflict:
        lines.append(f"No plan fits. These rules together rule out every plan: {', '.join(conflict)}")
    for suggestion in suggestions:
        lines.append(f"  - {suggestion}")
    return "\n".join(lines)


def trade_off_table(plans: list, complete: bool) -> str:
    """The non-dominated plans, fastest first: time, memory per GPU, cost and the knobs that differ."""
    if not plans:
        return "\nTrade-offs: none (no plan meets every rule)"
    lines = ["", "Trade-offs (no plan below is beaten on time, memory per GPU and cost at once"
             + ("" if complete else "; the search stopped early: the list may be incomplete") + "):"]
    configs = [assessment.config for _, assessment in plans]
    varying = [knob for knob in configs[0] if len({str(config[knob]) for config in configs}) > 1] if configs else []
    for problem, assessment in plans:
        values = assessment.values
        knobs = "  ".join(f"{knob} {format_value(assessment.config[knob])}" for knob in varying)
        lines.append(f"  {format_value(values['train_seconds'], 'time'):>10}  {format_value(values['memory_per_gpu'], 'bytes'):>10}"
                     f"  cost {format_value(values['cost']):>8}  {problem.inputs['gpu.id']}  {knobs}")
    return "\n".join(lines)
