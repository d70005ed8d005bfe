"""Regenerate docs/scenarios.md: every seed scenario in examples/ with the seed's estimate beside tplan's.

Each examples/seed*.yaml starts with a comment block that quotes the seed row it reproduces and
carries these structured comment lines (YAML after the colon; the goal schema admits no extra keys):

    # seed-estimate: {time: "24-36 h", hours: [24, 36], memory: "24-28 GB", memory_gb: [24, 28]}
    #      optional: cost: "~$17-22", dollars: [17, 22], rate: 0.80 (tplan's cost is then its GPU-hours
    #      at that $/GPU-hour, a number or [low, high]; else the cost at the goal's price_per_gpu_hour);
    #      costs: [{label, cost, dollars, rate, stage}, ...] for more seed costs (stage: one stage's); stages: {name: "seed's time"}
    # expect: optimal            (or: infeasible)
    # expect-config: {precision: fp8}        (optional: knobs the plan must choose)
    # why: one sentence on why tplan and the seed differ. Every tplan figure or setting in it is a
    #      placeholder filled in from the answer, so the sentence never goes stale: {time}, {hours} (the
    #      time in hours), {gpu_hours},
    #      {mfu}, {memory}, {smallest} (the least-memory plan), {step}, {cost}, {gpu}, {flops},
    #      {flops_per_token}, {ideal} (the run at 100% of the GPUs' peak), {seed_mfu} (the utilisation the
    #      seed's hours imply), {slower} (the seed's middle time over tplan's), {config.KNOB} (any knob of
    #      the plan, e.g. {config.offload}), {mem.PART} (weights, gradients, optimizer, activations,
    #      other) and {stage.NAME} (a stage's time). An infeasible goal's are those of the plan nearest
    #      to fitting (least memory, the capacity rule dropped) or to its deadline (fastest, the deadline
    #      dropped). Seed figures are quoted in "double quotes";
    #      tests/test_examples.py fails on a number with a unit outside both.

The seed's numbers come from that header; every tplan number comes from solving the example now
(tplan.api.plan_goal, as `tplan solve` does), so the doc follows the rule packs.

    python scripts/scenarios.py            # writes docs/scenarios.md
    python scripts/scenarios.py --check    # exit 1 when docs/scenarios.md is stale
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

from tplan.api import plan_goal
from tplan.evaluate import format_value
from tplan.explain import answer
from tplan.search import solve, with_rules
from tplan.stages import Staged

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DOC = ROOT / "docs" / "scenarios.md"
TIME_LIMIT = 60.0
MEMORY_RULE = "memory/fits-gpu-memory"
DEADLINE_RULE = "time/meets-deadline"
HEADER_KEYS = ("seed-estimate", "expect", "expect-config", "why")
GIB = 2**30

SEEDS = {
    "seed000": ("Seed 000: pretraining 0.1B-3B models on one RTX PRO 6000 Blackwell (96 GB)",
                "seed document 000 (in Russian). One epoch, no DeepSpeed, "
                "fp16; its \"int8\" row is modelled as fp8 matmuls with 8-bit AdamW (see the example)."),
    "seed001": ("Seed 001: the 10M-3B multimodal family on RTX 3090 / A100 80GB",
                "seed document 001. Batch 32, sequence 2048, bf16, AdamW; data in the seed's units: training "
                "samples of 2048 tokens (its 1B config: 1,000,000 steps of 64). Its \"GPU hours\" are compared with "
                "tplan's wall-clock hours where the seed also gives a wall clock (its 2 x 3090 GPU-hours equal its "
                "wall clock); costs at the seed's own hourly rates ($1.10 per 3090, $2.50 per A100 80GB, spot $0.80)."),
    "seed002": ("Seed 002: nanochat d20 on one A100 40GB",
                "seed document 002. Data in the seed's iterations: base at 524,288 tokens per iteration, mid at "
                "500 examples and SFT at 50 (an example length of 1,024 tokens assumed); each mode's stages "
                "are beside the seed's per-stage figures."),
    "seed003": ("Seed 003: a 12B model (Mistral-NeMo) with QLoRA on a 6 GB laptop GPU versus an A100 80GB",
                "seed document 003. The seed gives no dataset size: stage 1 is 3 of its \"3-5 epochs\" over an "
                "assumed 5e7-token dataset, later stages are assumed in proportion to its days; cloud costs at "
                "its A100 40GB rates ($0.20-1.10 per hour)."),
    "seed004": ("Seed 004: Qwen2.5-7B and Saiga (Mistral-7B) on synthetic data at three pressure levels",
                "seed document 004. The level drives rules/synthetic.yaml (token floor, LoRA rank "
                "floor or full fine-tune, context floor, learning rate / warm-up / clipping)."),
}


def header(path: Path) -> dict:
    """The example's title (first comment line) and its structured comment lines."""
    found: dict = {"title": "", "expect": "optimal"}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line[1:].strip()
        if not found["title"]:
            found["title"] = text
        key, _, value = text.partition(":")
        if key in HEADER_KEYS:
            found[key] = yaml.safe_load(value) if key in ("seed-estimate", "expect-config") else value.strip()
    return found


def _objective(problem, name: str):
    return dataclasses.replace(problem, objective=problem.rules.objectives[name], objective_name=name)


def run(path: Path) -> dict:
    """Solve one example; return plain numbers (picklable) for the doc and the tests."""
    planned = plan_goal(path, (), TIME_LIMIT, explain=True)
    if isinstance(planned, Staged):
        return {"path": str(path), "status": planned.status, "answer": planned.answer(), "staged": True}
    problem, plan = planned.problem, planned.plan   # a goal listing GPUs: the one answered
    result = {"path": str(path), "status": plan.status, "answer": planned.answer()}
    if plan.assessment is not None:
        values = plan.assessment.values
        result["flops_per_token"] = float(values["model_flops_per_token"])
        result["stability"] = {key: values[key] for key in ("learning_rate", "warmup_ratio", "gradient_clipping")}
        result["pressure"] = values["pressure"]
        if any(len(values) > 1 for values in problem.domains.values()):  # a pinned config has one footprint
            smallest = solve(_objective(problem, "memory"), TIME_LIMIT, explain=False)
            result["smallest_memory"] = smallest.assessment.values["memory_per_gpu"] if smallest.assessment else None
    else:
        result["suggestions"] = [repair.text for repair in planned.repairs]
        # How much memory would the goal need, or how long would it take? Drop the capacity rule and
        # minimise memory, or drop the deadline and take the fastest plan.
        for rule, objective, key in ((MEMORY_RULE, "memory", "needs"), (DEADLINE_RULE, "time", "fastest")):
            if rule not in plan.conflict:
                continue
            rules = {c.id for c in problem.rules.constraints} - {rule}
            relaxed = solve(_objective(with_rules(problem, rules), objective), TIME_LIMIT, explain=False)
            if relaxed.assessment is not None:
                result[key] = answer(problem, key, relaxed.assessment)
                result["flops_per_token"] = float(relaxed.assessment.values["model_flops_per_token"])
            break
    return result


def run_all(paths: list[Path], workers: int | None = None) -> list[dict]:
    workers = workers or min(2, os.cpu_count() or 1)
    if workers <= 1 or len(paths) <= 1:
        return [run(path) for path in paths]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, paths))


# ---------------------------------------------------------------- rendering

def _time(seconds: float) -> str:
    return format_value(seconds, "time")


def _gib(value: float) -> str:
    return format_value(value, "bytes")


def plan_text(config: dict) -> str:
    """The chosen knobs, compactly."""
    parts = [config["precision"], config["optimizer"],
             f"mb {config['micro_batch']} x ga {config['grad_accum']}", f"ctx {config['context']}"]
    if config["lora_rank"]:
        parts.append(f"LoRA r{config['lora_rank']}" + (f" ({config['quantization']} base)"
                                                       if config["quantization"] != "none" else ""))
    else:
        parts.append("all weights trained")
    parts.append(f"ZeRO {config['zero_stage']}")
    if config["offload"] != "none":
        parts.append(f"offload {config['offload']}")
    recompute = {True: "full recompute", False: "no recompute", "selective": "selective recompute"}
    parts.append(recompute[config["grad_checkpointing"]])
    if config["gpus"] > 1:
        parts.append(f"{config['gpus']} GPUs = dp {config['dp']} x tp {config['tp']} x pp {config['pp']}")
    return ", ".join(parts)


def ratio(tplan_hours: float, seed: dict) -> str:
    hours = seed.get("hours")
    if not hours:
        return "-"
    middle = (hours[0] + hours[1]) / 2
    value = tplan_hours / middle
    return f"{value:.1f}x" if value >= 0.1 else f"{value:.2f}x"


def _range(low: float, high: float, unit: str = "") -> str:
    text = f"{low:,.0f}" if round(low) == round(high) else f"{low:,.0f}-{high:,.0f}"
    return f"${text}" if unit == "$" else text + unit


def costs(seed: dict) -> list[dict]:
    """The seed's cost figures: the top-level cost/dollars/rate and any under costs."""
    top = [{key: seed[key] for key in ("cost", "dollars", "rate", "label") if key in seed}] if "cost" in seed else []
    return top + list(seed.get("costs") or [])


def tplan_cost(entry: dict, estimate: dict) -> str:
    """tplan's cost beside one seed cost: its GPU-hours at the seed's rate, else at the goal's price."""
    rate = entry.get("rate")
    if rate is None:
        return f"${estimate['cost']:,.0f}" if estimate.get("cost") is not None else "-"
    low, high = (rate, rate) if isinstance(rate, (int, float)) else rate
    return _range(estimate["gpu_hours"] * low, estimate["gpu_hours"] * high, "$")


def cost_text(item: dict) -> str:
    seed, estimate = item.get("seed-estimate") or {}, item["answer"]["estimate"] or {}
    stages = {stage["name"]: stage["estimate"] or {} for stage in item["answer"].get("stages") or []}
    parts = []
    for entry in costs(seed):
        label = f"{entry['label']}: " if entry.get("label") else ""
        source = stages.get(entry["stage"], {}) if entry.get("stage") else estimate
        parts.append(f"{label}{entry['cost']} / {tplan_cost(entry, source) if source else '-'}")
    return "; ".join(parts) or "-"


def figures(item: dict) -> dict:
    """tplan's figures by placeholder name (an infeasible goal's: its nearest plan's)."""
    result = item["answer"]
    source = result if result["estimate"] else item.get("needs") or item.get("fastest")
    if not source:
        return {}
    estimate, config = source["estimate"], source.get("config") or {}
    hours = (item.get("seed-estimate") or {}).get("hours")
    seconds = estimate["train_seconds"]
    found = {"time": _time(seconds), "hours": f"{seconds / 3600:.1f} h", "memory": _gib(estimate["memory_per_gpu_bytes"]),
             "gpu_hours": format_value(estimate["gpu_hours"]),
             "slower": f"{(hours[0] + hours[1]) / 2 / (seconds / 3600):.1f}x" if hours else "-"}
    if item.get("needs"):
        found["needs"] = _gib(item["needs"]["estimate"]["memory_per_gpu_bytes"])
    if item.get("smallest_memory") is not None:
        found["smallest"] = _gib(item["smallest_memory"])
    if estimate.get("cost") is not None:
        found["cost"] = f"${estimate['cost']:,.0f}"
    if "optimizer_steps" in estimate:   # one run (a staged goal's estimate is its stages' totals)
        mfu = estimate["model_flops_utilization"]
        ideal = seconds * mfu   # the same FLOPs at 100% of the GPUs' peak
        found.update(mfu=f"{mfu * 100:.0f}%", step=_time(seconds / estimate["optimizer_steps"]), ideal=_time(ideal))
        if hours:
            found["seed_mfu"] = _range(ideal / 36 / hours[1], ideal / 36 / hours[0], "%")
        if item.get("flops_per_token"):
            found.update(flops=f"{item['flops_per_token'] * estimate['training_tokens']:.2g}",
                         flops_per_token=f"{item['flops_per_token'] / 1e9:.3g} GFLOP/token")
    for key, value in config.items():
        found[f"config.{key}"] = str(value).lower() if isinstance(value, bool) else str(value)
    for key, value in estimate.get("memory_breakdown_bytes", {}).items():
        found[f"mem.{key}"] = _gib(value)
    for stage in result.get("stages") or []:
        if stage["estimate"]:
            found[f"stage.{stage['name']}"] = _time(stage["estimate"]["train_seconds"])
    if config.get("gpu"):
        found.update(gpu=config["gpu"], micro_batch=str(config["micro_batch"]), zero_stage=str(config["zero_stage"]))
    return found


def why(item: dict) -> str:
    """The example's sentence with tplan's own figures filled in from its answer."""
    text = item.get("why", "")
    for name, value in figures(item).items():
        text = text.replace("{" + name + "}", value)
    left = re.findall(r"\{[\w.-]+\}", text)
    if left:
        raise ValueError(f"{Path(item['path']).name}: why-line placeholders with no value: {', '.join(left)}")
    return text


def row(item: dict) -> str:
    seed = item.get("seed-estimate") or {}
    name = Path(item["path"]).name
    link = f"[{Path(name).stem}](../examples/{name})"
    seed_text = f"{seed.get('time', '-')}; {seed.get('memory', '-')}"
    result = item["answer"]
    cost = cost_text(item)
    if item.get("staged") and result["estimate"]:
        estimate = result["estimate"]
        seed_stages = seed.get("stages") or {}
        plans = "; ".join(f"{stage['name']}: {_time(stage['estimate']['train_seconds'])}"
                          + (f" (seed: {seed_stages[stage['name']]})" if stage["name"] in seed_stages else "")
                          + f", {plan_text(stage['config'])}" for stage in result["stages"])
        return (f"| {link} | {seed_text} | {_time(estimate['train_seconds'])} "
                f"({format_value(estimate['gpu_hours'])} GPU-h) | {ratio(estimate['train_seconds'] / 3600, seed)} | "
                f"{_gib(estimate['memory_per_gpu_bytes'])} | {cost} | - | {plans} | {result['status']} | {why(item)} |")
    if result["estimate"]:
        estimate = result["estimate"]
        hours = estimate["train_seconds"] / 3600
        tplan_time = f"{_time(estimate['train_seconds'])} ({format_value(estimate['gpu_hours'])} GPU-h)"
        memory = _gib(estimate["memory_per_gpu_bytes"])
        if item.get("smallest_memory") is not None:
            memory += f" (smallest plan {_gib(item['smallest_memory'])})"
        plan = plan_text(result["config"])
        status = result["status"]
        return (f"| {link} | {seed_text} | {tplan_time} | {ratio(hours, seed)} | {memory} | {cost} | "
                f"{estimate['model_flops_utilization'] * 100:.0f}% | {plan} | {status} | {why(item)} |")
    status = f"{result['status']} ({', '.join(result['conflict'])})"
    fastest = item.get("fastest")
    if fastest:
        estimate = fastest["estimate"]
        return (f"| {link} | {seed_text} | {_time(estimate['train_seconds'])} at best: past the deadline | "
                f"{ratio(estimate['train_seconds'] / 3600, seed)} | {_gib(estimate['memory_per_gpu_bytes'])} | {cost} | "
                f"{estimate['model_flops_utilization'] * 100:.0f}% | {plan_text(fastest['config'])} | {status} | "
                f"{why(item)} |")
    needs = item.get("needs")
    memory = f"needs at least {_gib(needs['estimate']['memory_per_gpu_bytes'])}" if needs else "-"
    return f"| {link} | {seed_text} | does not fit | - | {memory} | {cost} | - | - | {status} | {why(item)} |"


def breakdown_table(items: list[dict]) -> list[str]:
    """Seed 001's per-scale memory table beside tplan's breakdown of the same pinned configuration."""
    rows = [item for item in items if (item.get("seed-estimate") or {}).get("breakdown")]
    if not rows:
        return []
    lines = ["### Per-GPU memory at the seed's configuration (batch 32, sequence 2048, bf16, AdamW, one A100 80GB)", "",
             "The seed's columns are 4, 12 and 4 bytes per parameter (fp32 weights, three times that as optimizer "
             "state, fp32 gradients: 20 B/param); tplan counts 16 B/param: bf16 weights and gradients (2 + 2) and, "
             "in its optimizer column, the fp32 master and both Adam moments (12). tplan's other = CUDA context + "
             "allocator fragmentation.", "",
             "| example | seed: weights / optimizer / activations / gradients = total | tplan: weights / optimizer / "
             "activations / gradients / other = total | recompute |",
             "|---|---|---|---|"]
    for item in rows:
        seed = item["seed-estimate"]
        parts = seed["breakdown"]
        seed_text = (f"{parts['weights']} / {parts['optimizer']} / {parts['activations']} / {parts['gradients']} "
                     f"= {seed['memory']}")
        result = item["answer"]
        source = result if result["estimate"] else item.get("needs")
        if source is None:
            lines.append(f"| {Path(item['path']).stem} | {seed_text} | - | - |")
            continue
        split = source["estimate"]["memory_breakdown_bytes"]
        tplan = " / ".join(_gib(split[key]) for key in ("weights", "optimizer", "activations", "gradients", "other"))
        tplan += f" = {_gib(source['estimate']['memory_per_gpu_bytes'])}"
        recompute = source["config"]["grad_checkpointing"]
        lines.append(f"| {Path(item['path']).stem} | {seed_text} | {tplan} | {str(recompute).lower()} |")
    return lines + [""]


def within_48h(items: list[dict]) -> list[str]:
    """Seed 000's question: which of its rows finish within 48 hours (tplan's plans)."""
    done, not_done = [], []
    for item in items:
        estimate = item["answer"]["estimate"]
        if estimate is None or "within-48h" in item["path"]:
            continue
        target = done if estimate["train_seconds"] <= 48 * 3600 else not_done
        target.append(f"{Path(item['path']).stem} ({_time(estimate['train_seconds'])})")
    return ["**Which of the table's rows finish within 48 hours** (each at the seed's own precision and context): "
            f"{', '.join(done) or 'none'}; not within 48 h: {', '.join(not_done) or 'none'}. "
            "The deadline goal `seed000-1b-within-48h` asks the same of the seed's headline claim with every "
            "optimisation the seed lists allowed.", ""]


def notes(items: list[dict]) -> list[str]:
    lines = []
    for item in items:
        stem = Path(item["path"]).stem
        if item.get("stability") and item.get("pressure") not in (None, "none"):
            s = item["stability"]
            lines.append(f"- `{stem}`: pressure {item['pressure']} -> learning rate {s['learning_rate']:g}, "
                         f"warm-up {s['warmup_ratio']:g} of the steps, gradient clipping {s['gradient_clipping']:g} "
                         "(written to the DeepSpeed / Hugging Face configs).")
        for hint in item.get("suggestions", []):
            lines.append(f"- `{stem}` (infeasible): {hint}")
        for violation in item["answer"]["violations"]:
            lines.append(f"- `{stem}`: {violation['severity']} {violation['rule']}: {violation['message']}")
    return (["Notes:", ""] + lines + [""]) if lines else []


def render(items: list[dict]) -> str:
    lines = ["# The seed scenarios: the seeds' estimates beside tplan's", "",
             "Generated by `python scripts/scenarios.py` from `examples/seed*.yaml`; do not edit by hand "
             "(`python scripts/scenarios.py --check` fails when this file is stale, and `tests/test_examples.py` "
             "runs that check). Each example's comment header quotes the seed row it reproduces and states the "
             "model shape and assumptions; the seed's estimate below is copied from that header, every tplan "
             "number comes from solving the example with the shipped rule packs. The seed documents are not part of "
             "the repository: each example quotes the rows and figures of its seed that it uses.", "",
             "Columns: *tplan time* is wall clock (GPU-hours in brackets); *tplan / seed* divides it by the middle "
             "of the seed's range; *tplan memory* is per GPU for the fastest plan, which fills the GPU with larger "
             "micro-batches, and in brackets the smallest footprint any plan of the same goal needs (tplan solved "
             "again with `objective: memory`), which is what the seeds' memory figures should be compared with; "
             "*cost* puts each seed cost beside tplan's: its GPU-hours at the seed's own hourly rate (the goal's "
             "`price_per_gpu_hour`, or the rate the seed gives for that figure, such as a spot price); "
             "*MFU* is model FLOPs utilisation. For a goal that does not fit, *needs at least* is the smallest "
             "footprint with the GPU's capacity rule removed; for one that misses its deadline, the row shows the "
             "fastest plan with the deadline removed.", ""]
    for seed, (title, about) in SEEDS.items():
        group = [item for item in items if Path(item["path"]).name.startswith(seed)]
        if not group:
            continue
        lines += [f"## {title}", "", about, "",
                  "| example | seed's estimate (time; memory) | tplan time | tplan / seed | tplan memory per GPU "
                  "| cost: seed / tplan | MFU | tplan's plan | status | why they differ |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [row(item) for item in group] + [""]
        if seed == "seed000":
            lines += within_48h(group)
        lines += breakdown_table(group)
        lines += notes(group)
    return "\n".join(lines).rstrip("\n") + "\n"


# Row order inside a seed: model, then size or level, then hardware (else by name).
MODELS = ("qwen", "saiga")
SIZES = ("tiny", "demo", "small", "base-1b", "base-plus", "mid-3b", "mid-int8", "within-48h", "low", "medium",
         "large", "full", "high", "xl")
HARDWARE = (("3090-offload", 1), ("4x3090", 4), ("2x3090", 2), ("3090", 0), ("4xa100-zero3", 5),
            ("4xa100-tp2", 6), ("8xa100", 7), ("a100", 3))


def order(path: Path) -> tuple:
    stem = path.stem

    def rank(words):
        return next((i for i, word in enumerate(words) if word in stem), len(words))

    hardware = next((place for suffix, place in HARDWARE if stem.endswith(suffix)), 0)
    return stem[:7], "memory" in stem, rank(MODELS), rank(SIZES), hardware, stem


def collect(examples: Path = EXAMPLES) -> list[dict]:
    paths = sorted(examples.glob("seed*.yaml"), key=order)
    return [{**header(path), **result} for path, result in zip(paths, run_all(paths))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the doc is stale (nothing is written)")
    parser.add_argument("--examples", type=Path, default=EXAMPLES, help="folder of seed*.yaml examples")
    parser.add_argument("--doc", type=Path, default=DOC, help="the markdown file to write or check")
    args = parser.parse_args(argv)
    text = render(collect(args.examples))
    if args.check:
        current = args.doc.read_text(encoding="utf-8") if args.doc.exists() else ""
        if current != text:
            print(f"{args.doc} is stale: run python scripts/scenarios.py", file=sys.stderr)
            return 1
        print(f"{args.doc} is current")
        return 0
    args.doc.write_text(text, encoding="utf-8")
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
