"""Emit a plan as configs people launch: DeepSpeed JSON, Hugging Face training arguments,
and a launch line; and read a DeepSpeed JSON back into tplan knobs for `tplan check`."""

from __future__ import annotations

import math

from .errors import InputError, quote
from .evaluate import Assessment
from .goal import Problem
from .load import Document

DEEPSPEED_OPTIMIZERS = {"adamw": "AdamW", "lion": "Lion", "sgd": "SGD"}  # DeepSpeed config "type" names
HF_OPTIMIZERS = {"adamw": "adamw_torch", "adamw-8bit": "adamw_bnb_8bit", "paged-adamw": "paged_adamw_32bit",
                 "paged-adamw-8bit": "paged_adamw_8bit", "sgd": "sgd", "lion": "lion_32bit",
                 "adafactor": "adafactor"}                                  # TrainingArguments.optim values


def check_framework(problem: Problem, deepspeed_out: str | None) -> None:
    """A DeepSpeed JSON can only run a plan made for DeepSpeed's memory and combinations."""
    framework = problem.inputs["framework"]
    if deepspeed_out and framework != "deepspeed":
        raise InputError(problem.file, "framework",
                         f"framework deepspeed with --deepspeed (this goal plans for {framework}: its memory, "
                         f"sharding and rules are not what a DeepSpeed config runs)")


def _stability(values: dict) -> tuple[float, float, float]:
    """Learning rate, warm-up ratio and clipping norm the synthetic-data pack asks for."""
    return values["learning_rate"], values["warmup_ratio"], values["gradient_clipping"]


def deepspeed_config(problem: Problem, plan: Assessment) -> dict:
    """A DeepSpeed config whose batch sizes, precision, ZeRO and offload equal the plan's."""
    config, values = plan.config, plan.values
    dp = round(values["dp"])
    learning_rate, warmup_ratio, clipping = _stability(values)
    result = {"train_batch_size": config["micro_batch"] * config["grad_accum"] * dp,
              "train_micro_batch_size_per_gpu": config["micro_batch"],
              "gradient_accumulation_steps": config["grad_accum"],
              "gradient_clipping": clipping,
              "steps_per_print": 100,
              "zero_optimization": _zero_section(config, problem.rules.params)}
    if config["precision"] in ("bf16", "fp8", "bf16-pure"):  # fp8 matmuls come from Transformer Engine
        result["bf16"] = {"enabled": True}
    elif config["precision"] == "fp16":
        result["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16,
                          "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1}
    if config["optimizer"] in DEEPSPEED_OPTIMIZERS:
        params = {"lr": learning_rate, "weight_decay": 0.0 if config["optimizer"] == "sgd" else 0.1}
        if config["optimizer"] == "sgd":
            params["momentum"] = 0.9
        result["optimizer"] = {"type": DEEPSPEED_OPTIMIZERS[config["optimizer"]], "params": params}
    warmup_steps = max(1, math.ceil(warmup_ratio * values["steps"]))
    result["scheduler"] = {"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": learning_rate,
                                                          "warmup_num_steps": warmup_steps}}
    return result


def _zero_section(config: dict, params: dict) -> dict:
    stage = config["zero_stage"]
    zero = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if stage in (1, 2):
        bucket = int(params["zero_bucket_elements"])  # the bucket size the memory pack counts
        zero.update(reduce_bucket_size=bucket, allgather_bucket_size=bucket)
    if stage == 3:  # the working set the memory pack counts
        zero.update(stage3_max_live_parameters=int(params["zero3_max_live_parameters"]),
                    stage3_prefetch_bucket_size=int(params["zero3_prefetch_bucket_elements"]),
                    stage3_param_persistence_threshold=int(params["zero3_param_persistence_threshold"]),
                    stage3_gather_16bit_weights_on_model_save=True)
    if config["offload"] in ("optimizer", "full"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if config["offload"] == "full":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return zero


def hf_arguments(problem: Problem, plan: Assessment, deepspeed_path: str | None = None) -> dict:
    """Hugging Face TrainingArguments keys plus TRL ModelConfig's PEFT/quantisation keys
    (what `trl sft --config FILE` reads)."""
    config, values = plan.config, plan.values
    learning_rate, warmup_ratio, clipping = _stability(values)
    arguments = {"per_device_train_batch_size": config["micro_batch"],
                 "gradient_accumulation_steps": config["grad_accum"],
                 "max_steps": math.ceil(values["steps"]),
                 "learning_rate": learning_rate, "warmup_ratio": warmup_ratio, "max_grad_norm": clipping,
                 "bf16": config["precision"] in ("bf16", "fp8", "bf16-pure"), "fp16": config["precision"] == "fp16",
                 "gradient_checkpointing": config["grad_checkpointing"] is not False,
                 "optim": HF_OPTIMIZERS[config["optimizer"]],
                 "max_seq_length": config["context"],
                 "use_peft": config["lora_rank"] > 0}
    if config["lora_rank"] > 0:
        arguments.update(lora_r=config["lora_rank"], lora_alpha=2 * config["lora_rank"],
                         lora_target_modules=[f"{name}_proj" for name in problem.lora_targets])
    arguments.update(load_in_4bit=config["quantization"] == "nf4", load_in_8bit=config["quantization"] == "int8")
    if config["quantization"] == "nf4":
        arguments["bnb_4bit_quant_type"] = "nf4"
    if config["precision"] == "bf16-pure":  # load the model in bf16: the optimizer then keeps bf16 states
        arguments["model_init_kwargs"] = {"torch_dtype": "bfloat16"}
    if deepspeed_path and (config["zero_stage"] > 0 or config["offload"] != "none"):
        arguments["deepspeed"] = deepspeed_path
    return arguments


def launch_line(problem: Problem, plan: Assessment, deepspeed_path: str = "ds_config.json") -> str:
    """torchrun for plain data parallelism, the deepspeed launcher when ZeRO or offload is used."""
    config = plan.config
    per_node = min(config["gpus"], problem.inputs["hardware.gpus_per_node"])
    nodes = math.ceil(config["gpus"] / per_node)
    if config["zero_stage"] > 0 or config["offload"] != "none":
        hosts = f"--num_nodes {nodes} --hostfile hostfile " if nodes > 1 else ""
        return f"deepspeed {hosts}--num_gpus {per_node} train.py --deepspeed {deepspeed_path}"
    rendezvous = f"--nnodes {nodes} --rdzv_backend c10d --rdzv_endpoint $MASTER_ADDR:29500 " if nodes > 1 else ""
    return f"torchrun {rendezvous}--nproc_per_node {per_node} train.py"


def knobs_from_deepspeed(document: Document) -> dict:
    """The tplan knobs a DeepSpeed JSON pins (the rest come from the goal beside it)."""
    data = _section(document, ())
    knobs = {}
    micro = _integer(document, ("train_micro_batch_size_per_gpu",))
    accum = _integer(document, ("gradient_accumulation_steps",), default=1)
    if micro is not None:
        knobs.update(micro_batch=micro, grad_accum=accum)
        batch = _integer(document, ("train_batch_size",))
        if batch is not None:
            dp, remainder = divmod(batch, micro * accum)
            if remainder or dp < 1:
                raise InputError(document.path, "train_batch_size",
                                 f"train_micro_batch_size_per_gpu x gradient_accumulation_steps x GPUs "
                                 f"({micro} x {accum} x n), not {batch}")
            knobs["gpus"] = dp
    if _flag(document, ("bf16", "enabled")):
        knobs["precision"] = "bf16"
    elif _flag(document, ("fp16", "enabled")):
        knobs["precision"] = "fp16"
    else:
        knobs["precision"] = "fp32"
    knobs["zero_stage"] = _integer(document, ("zero_optimization", "stage"), default=0, minimum=0, maximum=3)
    offload = {part: _choice(document, ("zero_optimization", f"offload_{part}", "device"), OFFLOAD_DEVICES)
               for part in ("optimizer", "param")}
    knobs["offload"] = ("full" if offload["param"] != "none" else
                        "optimizer" if offload["optimizer"] != "none" else "none")
    optimizer = _section(document, ("optimizer",)).get("type", "")
    by_type = {value.lower(): key for key, value in DEEPSPEED_OPTIMIZERS.items()} | {"adam": "adamw"}
    if isinstance(optimizer, str) and optimizer.lower() in by_type:
        knobs["optimizer"] = by_type[optimizer.lower()]
    return knobs


OFFLOAD_DEVICES = ("none", "cpu", "nvme")  # DeepSpeed's offload device names


def _value(document: Document, key_path: tuple):
    value = _section(document, key_path[:-1]).get(key_path[-1])
    if value == "auto":
        raise InputError(document.path, ".".join(key_path),
                         "a value, not \"auto\" (the Hugging Face Trainer fills it in at launch from its "
                         "TrainingArguments; write the number it will be, or check the tplan config instead)")
    return value


def _section(document: Document, key_path: tuple) -> dict:
    """The object at ``key_path`` ({} when absent), or an error naming where it is not an object."""
    value = document.data
    for depth, key in enumerate(key_path):
        value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise InputError(document.path, ".".join(key_path[:depth + 1]), f"an object, not {quote(value)}")
    if not isinstance(value, dict):
        raise InputError(document.path, "top level", "a DeepSpeed config object")
    return value


def _integer(document: Document, key_path: tuple, default=None, minimum=1, maximum=2**24):
    value = _value(document, key_path)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InputError(document.path, ".".join(key_path),
                         f"an integer from {minimum} to {maximum:,}, not {quote(value)}")
    return value


def _flag(document: Document, key_path: tuple) -> bool:
    value = _value(document, key_path)
    if value is not None and not isinstance(value, bool):
        raise InputError(document.path, ".".join(key_path), f"true or false, not {quote(value)}")
    return bool(value)


def _choice(document: Document, key_path: tuple, choices: tuple) -> str:
    value = _value(document, key_path)
    if value is None:
        return "none"
    if value not in choices:
        raise InputError(document.path, ".".join(key_path), f"one of {', '.join(choices)}, not {quote(value)}")
    return value
