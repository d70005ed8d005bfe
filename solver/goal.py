"""Turn a goal (or config) file into a Problem: goal inputs, rule set and knob domains."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

from . import catalog, expr, hfconfig, units
from .errors import InputError, nearest, quote
from .evaluate import Evaluator
from .load import Document, read
from .packs import RuleSet, load_rules
from .validate import validate

GB, GIB = 1e9, 2**30


@dataclass
class Problem:
    """Everything the evaluator and the compiler need: one goal, bound to its rules."""

    file: str
    rules: RuleSet
    inputs: dict            # goal inputs by dotted name: model.hidden, gpu.memory_bytes, data.tokens ...
    input_tables: dict      # goal look-ups: gpu.peak_flops[precision]
    domains: dict           # knob -> tuple of values (one value = pinned)
    objective: str          # derived quantity to minimise
    objective_name: str     # time | cost | memory
    model_name: str
    gpu_name: str
    lora_targets: tuple = catalog.LORA_TARGETS
    sources: tuple = ()     # every file read to build it (outputs must never overwrite one)
    document: Document | None = None    # the goal it was read from
    runnable: dict = field(default_factory=dict)   # knob -> the values the engines written for run (repairs keep to them)

    def evaluator(self) -> Evaluator:
        return Evaluator(self.rules, {**self.rules.params, **self.inputs}, {**self.rules.tables, **self.input_tables})


def load_problem(path: str | Path | Document, pinned: bool = False, extra_rules: tuple = (),
                 knobs: dict | None = None, knobs_file: str | None = None) -> Problem:
    """Read, validate and bind a goal file (or a Document already read); ``pinned`` reads it as a
    config (every knob one value).
    ``extra_rules`` are team packs added after the goal's own; ``knobs`` (read from ``knobs_file``,
    e.g. a DeepSpeed JSON) override the goal's knobs."""
    document = path if isinstance(path, Document) else read(path)
    validate(document, "config" if pinned and not knobs else "goal")
    data = document.data
    if "stages" in data:
        raise InputError(document.path, document.where(("stages",)),
                         "one run per config, without stages (tplan solve plans the stages; check each "
                         "stage's config on its own)")
    model = _model_inputs(document)
    gpu = catalog.find_gpu(_one_gpu(document), document.path, document.where(("hardware", "gpu")))
    inputs = {**model, **_gpu_inputs(gpu), **_hardware_inputs(document, gpu["id"]), **_data_inputs(document, pinned),
              "task": data.get("task", "finetune"), "attention_flash": data.get("attention", "flash") == "flash",
              "loss": data.get("loss", "standard"), "framework": data.get("framework", "deepspeed"),
              "grad_dtype": data.get("grad_dtype", "auto"),
              "optimizer_in_backward": data.get("optimizer_in_backward", False),
              "compile": data.get("compile", False), "fp8_recipe": data.get("fp8_recipe", "tensorwise"),
              "fp8_all_gather": data.get("fp8_all_gather", False),
              "overlap_grad_reduce": data.get("overlap_grad_reduce", False),
              "tp_comm_overlap": data.get("tp_comm_overlap", False),
              "goal.deadline_seconds": deadline_seconds(document), "goal.budget": data.get("budget", 0)}
    if inputs["goal.budget"] and not inputs["hardware.price_per_gpu_hour"]:
        raise InputError(document.path, document.where(("budget",)),
                         f"hardware.price_per_gpu_hour with a budget ({gpu['id']} has no list price in "
                         f"rules/catalog/prices.yaml)")
    tables = {"gpu.peak_flops": {key: float(value) * 1e12 for key, value in gpu["peak_tflops"].items()},
              "gpu.matmul_fraction": {key: float(gpu["matmul_fraction"].get(key, gpu["matmul_fraction"]["bf16"]))
                                      for key in gpu["peak_tflops"]}}
    extra = [_existing(document, Path(document.path).parent / pack, ("rules", index))
             for index, pack in enumerate(data.get("rules", []))] + [Path(pack) for pack in extra_rules]
    rules = load_rules(_each_once(extra), set(inputs) | set(tables))
    objective_name = data.get("objective", "time")
    if objective_name not in rules.objectives:
        raise InputError(document.path, document.where(("objective",)),
                         f"an objective the rule packs define ({', '.join(rules.objectives)})")
    sources = (document.path, *map(str, extra), *([model["model.hf_config"]] if "model.hf_config" in model else []),
               *([knobs_file] if knobs_file else []))
    problem = Problem(document.path, rules, inputs, tables, {}, rules.objectives[objective_name], objective_name,
                      model["model.name"], gpu["name"], tuple(data.get("lora_targets", catalog.LORA_TARGETS)),
                      sources, document)
    problem.domains = _domains(document, problem, pinned, knobs or {}, knobs_file)
    return problem


def _model_inputs(document: Document) -> dict:
    spec = document.data["model"]
    where = document.where(("model",))
    config_path = None
    if isinstance(spec, str):
        entry = catalog.find_model(spec, document.path, where)
        shape, name, params = entry, entry["id"], None
        hf_id = spec if "/" in spec else entry.get("hf_id")  # a fine-tuned release loads its own weights
    elif "hf_config" in spec:
        config_path = _existing(document, Path(document.path).parent / spec["hf_config"], ("model", "hf_config"))
        shape = hfconfig.shape_from_hf_config(str(config_path), document.path, document.where(("model", "hf_config")))
        name, params = spec.get("name", config_path.parent.name or "hf-config"), spec.get("params")
        hf_id = spec.get("hf_id", str(config_path.parent.resolve()))
    else:
        shape, name, params = spec, spec.get("name", "custom"), spec.get("params")
        hf_id = spec.get("hf_id")
    engine_names = {"model.hf_id": hf_id, "model.model_type": shape.get("model_type")}
    shape = {key: value for key, value in shape.items() if key in catalog.SHAPE_DEFAULTS or key in catalog.SHAPE_REQUIRED}
    catalog.check_shape(shape, document.path, where)
    shape = catalog.complete_shape(shape)
    counted = catalog.count_params(shape)
    if params and abs(params / counted - 1) > catalog.PARAMS_TOLERANCE:
        raise InputError(document.path, document.where(("model", "params")),
                         f"params within {catalog.PARAMS_TOLERANCE:.0%} of the count of the shape it gives "
                         f"({counted:,}), not {params:,.0f}: memory follows the shape and FLOPs the count, so "
                         f"they must describe one model (drop params, or fix the shape)")
    total = float(params or counted)
    active = catalog.count_params(shape, active_only=True) * total / counted
    blocks_per_token, width_per_token = catalog.mlp_widths_per_token(shape)
    targets = document.data.get("lora_targets", list(catalog.LORA_TARGETS))
    largest = max(shape["vocab"] * shape["hidden"], catalog.layer_params(shape))
    inputs = {f"model.{key}": value for key, value in shape.items()}
    embeddings = shape["hidden"] * (shape["vocab"] * (1 if shape["tied_embeddings"] else 2) + shape["position_embeddings"])
    if config_path is not None:
        inputs["model.hf_config"] = str(config_path)
    inputs.update({**engine_names, "model.name": name, "model.params": total, "model.active_params": active,
                   "model.embedding_params": float(embeddings),
                   "model.lora_params_per_rank": float(catalog.lora_params_per_rank(
                       shape, targets, engine_names["model.model_type"])),
                   "model.largest_layer_params": float(largest),
                   "model.vector_params": float(catalog.vector_params(shape)),
                   "model.block_params": catalog.blocks_params(shape) * total / counted,
                   "model.block_matrix_params": (catalog.blocks_params(shape)
                                                 - catalog.vector_params(shape, blocks_only=True)) * total / counted,
                   "model.mlp_blocks_per_token": blocks_per_token, "model.mlp_width_per_token": width_per_token})
    return inputs


def _gpu_inputs(gpu: dict) -> dict:
    return {"gpu.name": gpu["name"], "gpu.memory_bytes": gpu["memory_gib"] * GIB,
            "gpu.memory_bandwidth": gpu["memory_bandwidth_gbs"] * GB,
            "gpu.intra_node_bandwidth": gpu["intra_node_gbs"] * GB, "gpu.pcie_bandwidth": gpu["pcie_gbs"] * GB,
            "gpu.inter_node_bandwidth": gpu["inter_node_gbs"] * GB, "gpu.architecture": gpu["architecture"],
            "gpu.id": gpu["id"]}


def _each_once(paths: list[Path]) -> list[Path]:
    """The packs in order, each file once (a goal's pack also given with --rules, or as ./tplan-rules.yaml)."""
    unique: dict[Path, Path] = {}
    for path in paths:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _existing(document: Document, path: Path, key_path: tuple) -> Path:
    """A file the goal names, which must exist: a missing one is blamed on the goal's line."""
    if not path.exists():
        raise InputError(document.path, document.where(key_path), f"an existing file, but {path} does not exist")
    return path


IMPLIED = ("gpu", "nodes", "dp")   # keys of an answer's config that are not knobs: the GPU chosen and what the knobs imply


def gpu_choices(document: Document) -> list[Document]:
    """The goal once per GPU it lists (hardware.gpu may name several to compare, knobs.gpu picks
    among them); anything else is returned as it is, for validation to judge."""
    listed, knobs = _gpus_listed(document), document.data.get("knobs") if isinstance(document.data, dict) else None
    if not listed or not isinstance(knobs or {}, dict) or (len(listed) == 1 and "gpu" not in (knobs or {})):
        return [document]
    rest = {name: value for name, value in (knobs or {}).items() if name != "gpu"}
    return [Document(document.path, {**document.data, "hardware": {**document.data["hardware"], "gpu": gpu},
                                     "knobs": rest}, document.lines) for gpu in listed]


def changed(document: Document, gpu_id: str, changes: dict) -> Document:
    """The goal on one GPU (``gpu_id``) with ``changes`` made: another `gpu`, a number of `nodes`, or a
    number of `tokens` in place of the data's amount (its batch keys kept). Knobs that name the GPU
    or follow from the node count (gpu, nodes, dp) are dropped."""
    data = document.data
    hardware = {**data["hardware"], "gpu": changes.get("gpu", gpu_id), "nodes": changes.get("nodes",
                                                                                         data["hardware"].get("nodes", 1))}
    knobs = {name: value for name, value in (data.get("knobs") or {}).items() if name not in IMPLIED}
    amount = data["data"]
    if "tokens" in changes:
        amount = {**{key: value for key, value in amount.items() if key.startswith("global_batch")
                     or key.startswith("synthetic")}, "tokens": changes["tokens"]}
    return Document(document.path, {**data, "hardware": hardware, "knobs": knobs, "data": amount}, document.lines)


def _gpus_listed(document: Document) -> list[str]:
    """The GPU ids in play: knobs.gpu (which must be among hardware.gpu) or hardware.gpu; [] when the
    goal is malformed (validation reports it)."""
    data = document.data if isinstance(document.data, dict) else {}
    hardware, knobs = data.get("hardware"), data.get("knobs")
    listed = hardware.get("gpu") if isinstance(hardware, dict) else None
    listed = [listed] if isinstance(listed, str) else listed
    if not isinstance(listed, list) or not listed or not all(isinstance(gpu, str) for gpu in listed):
        return []
    picked = knobs.get("gpu") if isinstance(knobs, dict) else None
    if picked is None:
        return listed
    picked = [picked] if isinstance(picked, str) else picked
    known = {gpu.lower() for gpu in listed}
    for gpu in picked if isinstance(picked, list) else [picked]:
        if not isinstance(gpu, str) or gpu.lower() not in known:
            raise InputError(document.path, document.where(("knobs", "gpu")),
                             f"a GPU among hardware.gpu ({', '.join(listed)}), not {quote(gpu)}")
    return picked


def _one_gpu(document: Document) -> str:
    listed = _gpus_listed(document) or [document.data["hardware"]["gpu"]]
    if len(listed) != 1:
        raise InputError(document.path, document.where(("hardware", "gpu")),
                         f"one GPU for a config (a list of GPUs is compared by `tplan solve`), not {len(listed)}")
    return listed[0]


def _hardware_inputs(document: Document, gpu_id: str) -> dict:
    hardware = document.data["hardware"]
    per_node, nodes = hardware.get("gpus_per_node", 1), hardware.get("nodes", 1)

    def quantity(key, parse):
        return parse(hardware[key], document.path, document.where(("hardware", key))) * GB if key in hardware else 0

    price, source = _price(document, gpu_id)
    return {"hardware.gpus_per_node": per_node, "hardware.nodes": nodes, "hardware.total_gpus": per_node * nodes,
            "hardware.inter_node_bandwidth": quantity("inter_node_gbs", units.gigabytes_per_second),
            "hardware.cpu_memory_bytes": quantity("cpu_memory_gb", units.gigabytes),
            "hardware.price_per_gpu_hour": price, "hardware.price_source": source}


def _price(document: Document, gpu_id: str) -> tuple[float, str]:
    """The price of one GPU-hour and where it comes from: the goal's number, its map by GPU id, or
    the shipped list price (none: 0, the cost is then GPU-hours)."""
    given = document.data["hardware"].get("price_per_gpu_hour")
    if isinstance(given, (int, float)):
        return float(given), "the goal"
    if isinstance(given, dict):
        prices = {str(key).lower(): value for key, value in given.items()}
        if gpu_id not in prices:
            raise InputError(document.path, document.where(("hardware", "price_per_gpu_hour")),
                             f"a price for every GPU the goal lists; {gpu_id} has none")
        return float(prices[gpu_id]), "the goal"
    listed = catalog.list_prices()
    if gpu_id in listed["prices"]:
        return float(listed["prices"][gpu_id]), f"list price of {listed['as_of']}, rules/catalog/prices.yaml"
    return 0.0, ""


def _data_inputs(document: Document, pinned: bool) -> dict:
    data = document.data
    spec = data["data"]
    sequences, tokens = spec.get("global_batch", 0), spec.get("global_batch_tokens", 0)
    source = ("data.global_batch" if sequences else "data.global_batch_tokens" if tokens
              else f"the default for {data.get('task', 'finetune')} in rules/batch.yaml")
    return {"data.tokens": _run_tokens(document), "data.steps": spec.get("steps", 0), "data.synthetic_pressure": spec.get("synthetic_pressure", "none"),
            "data.synthetic_share": spec.get("synthetic_share", 0), "data.global_batch": sequences,
            "data.global_batch_tokens": float(tokens), "data.batch_source": source,
            # a config file that names no global batch is checked at its own batch
            "data.batch_from_config": pinned and not sequences and not tokens}


AMOUNTS = {"tokens": (), "samples": ("tokens_per_sample",), "epochs": ("dataset_tokens",), "steps": ()}


def _run_tokens(document: Document) -> float:
    """Tokens over the whole run from the one amount the goal gives (0 for steps: the rules multiply
    them by the plan's tokens per step)."""
    spec = document.data["data"]
    given = [amount for amount in AMOUNTS if amount in spec]
    for amount, companions in AMOUNTS.items():
        for companion in companions:
            if (amount in spec) != (companion in spec):
                missing, present = (companion, amount) if amount in spec else (amount, companion)
                raise InputError(document.path, document.where(("data", present)),
                                 f"data.{missing} with data.{present} (the run is {amount} x {companion})")
    if len(given) != 1:
        raise InputError(document.path, document.where(("data",)),
                         "exactly one of data.tokens, data.samples (with tokens_per_sample), data.epochs "
                         f"(with dataset_tokens) or data.steps, not {' and '.join(given) or 'none'}")
    where = document.where(("data", given[0]))
    if given[0] == "tokens":
        return units.tokens(spec["tokens"], document.path, where)
    if given[0] == "samples":
        return units.tokens(spec["samples"] * spec["tokens_per_sample"], document.path, where)
    if given[0] == "epochs":
        per_epoch = units.tokens(spec["dataset_tokens"], document.path, document.where(("data", "dataset_tokens")))
        return units.tokens(spec["epochs"] * per_epoch, document.path, where)
    return 0.0


def deadline_seconds(document: Document) -> float:
    deadline = document.data.get("deadline")
    return 0.0 if deadline is None else units.seconds(deadline, document.path, document.where(("deadline",)))


def _domains(document: Document, problem: Problem, pinned: bool, overrides: dict, overrides_file) -> dict:
    given = {**(document.data.get("knobs") or {}), **overrides}
    implied = {name: given.pop(name) for name in IMPLIED if name in given and name not in problem.rules.knobs}
    rules = problem.rules
    for name in given:
        if name not in rules.knobs:
            raise InputError(document.path, document.where(("knobs", name)),
                             f"a knob among {', '.join(rules.knobs)}, not {quote(name)}{nearest(name, rules.knobs)}")
    constants = problem.evaluator().constant
    domains = {}
    # knobs whose default domain divides an expression come last: it may read the other knobs' domains
    for name, knob in sorted(rules.knobs.items(), key=lambda item: item[1].divides is not None):
        file, where = (overrides_file, name) if name in overrides else (document.path, document.where(("knobs", name)))
        if name in given:
            values = given[name] if isinstance(given[name], list) else [given[name]]
        elif pinned:
            values = [_assumed(knob, constants, file, where)]
        elif knob.divides is not None:
            values = _divisors_over(problem, knob.divides, domains)
        else:
            limit = constants(knob.at_most) if knob.at_most is not None else None
            excluded = {value for value, condition in knob.default_where if not constants(condition)}
            values = [value for value in knob.default
                      if (limit is None or value <= limit) and value not in excluded]
            if (limit is not None and isinstance(knob.values, str) and limit not in values and limit >= 1
                    and _allowed(knob, int(limit))):  # pp up to 2,048 GPUs is beyond pp's range: not a default
                values.append(int(limit))
        for value in values:
            if not _allowed(knob, value):
                raise InputError(file, where, f"values of {name} among {_describe(knob)}, not {quote(value)}")
        if pinned and len(values) != 1:
            raise InputError(file, where, f"one value for {name} in a config (the config file does not set it)")
        domains[name] = tuple(values)
    _check_implied(document, problem, implied, domains)
    return {name: domains[name] for name in rules.knobs}


def _check_implied(document: Document, problem: Problem, implied: dict, domains: dict) -> None:
    """An answer's config pinned again carries dp and nodes: they must be what its knobs imply."""
    if not {"dp", "nodes"} & set(implied):
        return
    if any(len(domains[knob]) != 1 for knob in ("gpus", "tp", "pp", "cp")):
        raise InputError(document.path, document.where(("knobs", next(k for k in ("dp", "nodes") if k in implied))),
                         "dp and nodes only beside one value each of gpus, tp, pp and cp (they follow from them)")
    gpus, tp, pp, cp = (domains[knob][0] for knob in ("gpus", "tp", "pp", "cp"))
    follows = {"dp": gpus / (tp * pp * cp), "nodes": -(-gpus // problem.inputs["hardware.gpus_per_node"])}
    for name, value in implied.items():
        if name in follows and value != follows[name]:
            raise InputError(document.path, document.where(("knobs", name)),
                             f"{name} {follows[name]:g}, what gpus {gpus}, tp {tp}, pp {pp} and cp {cp} imply, "
                             f"not {quote(value)}")


def _divisors_over(problem: Problem, node: expr.Node, domains: dict) -> list[int]:
    """Every divisor of ``node``'s value, for each combination of the knobs it reads."""
    evaluator, knobs = problem.evaluator(), sorted(problem.rules.knobs_read(node))
    found = set()
    for combination in itertools.product(*(domains[knob] for knob in knobs)):
        target = evaluator.value(node, dict(zip(knobs, combination)), {})
        if isinstance(target, (int, float)) and math.isfinite(target) and target >= 1:
            target = int(target)
            small = [d for d in range(1, math.isqrt(target) + 1) if target % d == 0]
            found.update(small + [target // d for d in small])
    return sorted(found) or [1]


def _assumed(knob, constants, file: str, where: str):
    if isinstance(knob.assumed, str) and knob.assumed not in knob.values:
        return int(constants(expr.parse(knob.assumed, file, where)))
    return knob.assumed


def _allowed(knob, value) -> bool:
    if knob.values == "integer":
        return isinstance(value, int) and not isinstance(value, bool) and knob.minimum <= value <= knob.maximum
    return any(value == allowed and type(value) is type(allowed) for allowed in knob.values)


def _describe(knob) -> str:
    if knob.values == "integer":
        return f"integers from {knob.minimum} to {knob.maximum:,}"
    return ", ".join(map(str, knob.values))
