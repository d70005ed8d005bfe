"""torchtitan: the job config (TOML, torchtitan 0.2's --job.config_file) of a pretraining plan under
FSDP2 with tensor, pipeline and context parallelism, float8 and torch.compile; and such a file read
back."""

from __future__ import annotations


from .. import catalog
from ..errors import InputError
from . import launch
from .fields import Fields
from .run import Run

CONFIG_FILE = "job.toml"
RUNS = {"lora_rank": (0,), "quantization": ("none",), "optimizer": ("adamw",), "offload": ("none", "full"),
        "precision": ("fp32", "bf16", "fp8"), "zero_stage": (0, 2, 3), "vp": (1, 2)}
CHECKPOINTING = {False: "none", "selective": "selective", True: "full"}
RESHARD = {3: "always", 2: "never"}     # FSDP2 reshard_after_forward: ZeRO-3 and ZeRO-2 as tplan counts them
SCHEDULES = {1: "1F1B", 2: "Interleaved1F1B"}   # torchtitan's multi-stage schedules run 2 stages per rank
FLOAT8 = "quantize.linear.float8"       # torchtitan's float8 converter (torchao dynamic scaling, the goal's fp8_recipe)
RECIPES = {"tensorwise": "tensorwise", "rowwise": "rowwise"}  # torchao recipe names (None: tensorwise)


def runs(problem) -> dict:
    """What torchtitan runs, for a model it trains (else bad input: it trains only its own models)."""
    model_of(problem)
    return RUNS


def model_of(problem) -> tuple[str, str]:
    """torchtitan's (name, flavor) for the plan's model."""
    models = catalog.torchtitan_models()
    if problem.model_name not in models:
        raise InputError(problem.file, "model", f"a model torchtitan trains for --emit torchtitan "
                                                f"({', '.join(models)}), not {problem.model_name}")
    return models[problem.model_name]


def config(run: Run) -> dict:
    name, flavor = model_of(run.problem)
    pipelined = run["pp"] > 1
    model = {"name": name, "flavor": flavor, "hf_assets_path": f"./assets/hf/{run.model_id('torchtitan').split('/')[-1]}"}
    if run["precision"] == "fp8":
        model["converters"] = [FLOAT8]
    parallelism = {"data_parallel_replicate_degree": run.dp if run["zero_stage"] == 0 else 1,
                   "data_parallel_shard_degree": 1 if run["zero_stage"] == 0 else run.dp,
                   "tensor_parallel_degree": run["tp"], "context_parallel_degree": run["cp"],
                   "pipeline_parallel_degree": run["pp"]}
    if run["zero_stage"]:
        parallelism["fsdp_reshard_after_forward"] = RESHARD[run["zero_stage"]]
    if pipelined:  # a pipeline's micro-batches are the accumulation: one optimizer step per local batch
        parallelism.update(pipeline_parallel_schedule=SCHEDULES[run["vp"]],
                           pipeline_parallel_microbatch_size=run["micro_batch"])
    result = {"job": {"dump_folder": "./outputs", "description": f"tplan plan: {run.problem.model_name}"},
              "model": model,
              "optimizer": {"name": "AdamW", "lr": run.learning_rate, "eps": 1e-8, "weight_decay": run.weight_decay},
              "lr_scheduler": {"warmup_steps": run.warmup_steps},
              "training": {"local_batch_size": run["micro_batch"] * (run["grad_accum"] if pipelined else 1),
                           "global_batch_size": run.global_batch, "seq_len": run["context"], "steps": run.steps,
                           "max_norm": run.clipping,
                           "mixed_precision_param": "float32" if run["precision"] == "fp32" else "bfloat16",
                           "enable_cpu_offload": run["offload"] == "full"},
              "parallelism": parallelism,
              "activation_checkpoint": {"mode": CHECKPOINTING[run["grad_checkpointing"]]},
              "compile": _compile(run)}
    if run["grad_checkpointing"] == "selective":
        result["activation_checkpoint"]["selective_ac_option"] = "op"
    if run["precision"] == "fp8":  # the LM head stays in bf16, as tplan counts fp8 for the blocks' linears
        float8 = {"recipe_name": run.problem.inputs["fp8_recipe"], "filter_fqns": ["output"]}
        if run.problem.inputs["fp8_all_gather"]:  # FSDP2 gathers the fp8 weights, scales computed once per step
            float8.update(enable_fsdp_float8_all_gather=True, precompute_float8_dynamic_scale_for_fsdp=True)
        result["quantize"] = {"linear": {"float8": float8}}
    return result


def _compile(run: Run) -> dict:
    """torch.compile of the blocks (goal `compile`) and of the loss (goal `loss: compiled`), each as planned."""
    components = [name for name, on in (("model", run.problem.inputs["compile"]),
                                         ("loss", run.problem.inputs["loss"] == "compiled")) if on]
    return {"enable": bool(components), "components": components}


def files(run: Run) -> dict:
    """job.toml and launch.sh (torchrun -m torchtitan.train)."""
    command = launch.torchrun(run) + ["-m", "torchtitan.train", "--job.config_file", f"$HERE/{CONFIG_FILE}"]
    return {CONFIG_FILE: config(run), "launch.sh": launch.script(run, command, cd=True)}


def toml(content: dict) -> str:
    """TOML of a job config (tables of scalars, lists and nested tables: all torchtitan's needs)."""
    lines: list[str] = []
    _table(content, (), lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(table: dict, path: tuple, lines: list[str]) -> None:
    scalars = {key: value for key, value in table.items() if not isinstance(value, dict)}
    if scalars and path:
        lines += ["", f"[{'.'.join(path)}]"]
    lines += [f"{key} = {_value(value)}" for key, value in scalars.items()]
    for key, value in table.items():
        if isinstance(value, dict):
            _table(value, path + (key,), lines)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


def knobs(fields: Fields) -> tuple[dict, dict]:
    """(knobs, goal settings) a torchtitan job config pins: batch, context, parallel degrees, sharding,
    precision, checkpointing, offload; and its model, compile and loss (torchtitan 0.2 compiles the
    model and the loss when compile is on, unless compile.components says otherwise)."""
    degree = {key: fields.integer(("parallelism", f"{key}_degree"), default=1, minimum=-1)
              for key in ("data_parallel_replicate", "data_parallel_shard", "tensor_parallel",
                          "context_parallel", "pipeline_parallel")}
    replicate, shard = degree["data_parallel_replicate"], degree["data_parallel_shard"]
    if replicate > 1 and shard > 1 or shard == -1 or replicate == -1:
        raise fields.error(("parallelism", "data_parallel_shard_degree"),
                           "either data-parallel replicas or shards, each a number (tplan does not model HSDP or -1)")
    pp, dp = degree["pipeline_parallel"], max(replicate, shard)
    schedule = fields.text(("parallelism", "pipeline_parallel_schedule"), "1F1B")
    if pp > 1 and schedule not in SCHEDULES.values():
        raise fields.error(("parallelism", "pipeline_parallel_schedule"),
                           f"one of {', '.join(SCHEDULES.values())}, not {schedule!r}")
    local = fields.integer(("training", "local_batch_size"), default=8)
    micro = fields.integer(("parallelism", "pipeline_parallel_microbatch_size"), default=1) if pp > 1 else local
    batch = fields.integer(("training", "global_batch_size"), default=-1, minimum=-1)
    batch = local * dp if batch == -1 else batch
    if batch % (micro * dp):
        raise fields.error(("training", "global_batch_size"), f"a multiple of the micro-batch x data-parallel "
                                                             f"degree ({micro} x {dp}), not {batch}")
    reshard = fields.choice(("parallelism", "fsdp_reshard_after_forward"),
                            {"default": 2 if pp > 1 else 3, "always": 3, "never": 2}, 2 if pp > 1 else 3)
    converters = fields.names(("model", "converters"))
    mode = fields.choice(("activation_checkpoint", "mode"), {v: k for k, v in CHECKPOINTING.items()}, "selective")
    found = {"micro_batch": micro, "grad_accum": batch // (micro * dp), "context": fields.integer(("training", "seq_len")),
             "tp": degree["tensor_parallel"], "pp": pp, "cp": degree["context_parallel"],
             "vp": 2 if pp > 1 and schedule == "Interleaved1F1B" else 1,
             "zero_stage": reshard if shard > 1 or replicate == 1 and fields.has(
                 ("parallelism", "fsdp_reshard_after_forward")) else 0,
             "precision": "fp8" if FLOAT8 in converters or "float8" in converters else
             "fp32" if fields.text(("training", "mixed_precision_param"), "bfloat16") == "float32" else "bf16",
             "grad_checkpointing": mode, "offload": "full" if fields.flag(("training", "enable_cpu_offload")) else "none",
             "optimizer": "adamw", "lora_rank": 0, "quantization": "none",
             "gpus": dp * degree["tensor_parallel"] * pp * degree["context_parallel"]}
    if mode == "selective" and fields.text(("activation_checkpoint", "selective_ac_option"), "2") != "op":
        raise fields.error(("activation_checkpoint", "selective_ac_option"),
                           "\"op\" (per-op selective recomputation; tplan does not model every-n-layer checkpointing)")
    models = {tuple(value): key for key, value in catalog.torchtitan_models().items()}
    name = (fields.text(("model", "name"), "llama3"), fields.text(("model", "flavor"), "debugmodel"))
    if name not in models:
        raise fields.error(("model", "flavor"), f"a torchtitan model tplan knows "
                                                f"({', '.join(' '.join(pair) for pair in models)}), not {' '.join(name)}")
    compiled = fields.names(("compile", "components")) if fields.has(("compile", "components")) else ["model", "loss"]
    enabled = fields.flag(("compile", "enable"))
    settings = {"model": models[name], "framework": "fsdp", "compile": enabled and "model" in compiled,
                "loss": "compiled" if enabled and "loss" in compiled else "standard"}
    if found["precision"] == "fp8":
        section = ("quantize", "linear", "float8") if FLOAT8 in converters else ("float8",)
        settings["fp8_recipe"] = fields.choice((*section, "recipe_name"), RECIPES, "tensorwise")
        settings["fp8_all_gather"] = fields.flag((*section, "enable_fsdp_float8_all_gather"))
    return found, settings
