"""DeepSpeed: the JSON config of a plan, for the deepspeed launcher (every value written) or beside a
Hugging Face Trainer ("auto" where the Trainer owns a value); and a DeepSpeed JSON read back."""

from __future__ import annotations

from . import launch
from .fields import Fields
from .run import Run

OPTIMIZERS = {"adamw": "AdamW", "lion": "Lion", "sgd": "SGD"}   # DeepSpeed config "type" names
OFFLOAD_DEVICES = {"none": "none", "cpu": "cpu", "nvme": "nvme"}  # DeepSpeed's offload device names
SCRIPT = '"${TRAIN_SCRIPT:-train.py}"'


def config(run: Run, trainer: bool = False) -> dict:
    """A DeepSpeed config whose batch, precision, ZeRO and offload are the plan's; with ``trainer``,
    the values the Hugging Face Trainer fills in from its arguments are "auto" (it refuses two
    sources that disagree) and its own scheduler runs (a DeepSpeed scheduler would replace it)."""
    def owned(value):
        return "auto" if trainer else value

    result = {"train_batch_size": owned(run.global_batch),
              "train_micro_batch_size_per_gpu": owned(run["micro_batch"]),
              "gradient_accumulation_steps": owned(run["grad_accum"]),
              "gradient_clipping": owned(run.clipping),
              "steps_per_print": 100,
              "zero_optimization": _zero_section(run)}
    if trainer:  # both blocks: without an fp16 block transformers 4.x and 5.x assume different dtypes
        result.update(bf16={"enabled": "auto"}, fp16={"enabled": "auto"})
    elif run["precision"] in ("bf16", "bf16-pure"):
        result["bf16"] = {"enabled": True}
    elif run["precision"] == "fp16":
        result["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16,
                          "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1}
    if run["optimizer"] in OPTIMIZERS:  # DeepSpeed's own (its CPU Adam under offload)
        params = {"lr": owned(run.learning_rate), "weight_decay": owned(run.weight_decay)}
        if run["optimizer"] == "sgd":
            params["momentum"] = 0.9
        result["optimizer"] = {"type": OPTIMIZERS[run["optimizer"]], "params": params}
    else:  # bitsandbytes and Adafactor optimizers come from the training script
        result["zero_allow_untested_optimizer"] = True
    if not trainer:
        result["scheduler"] = {"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": run.learning_rate,
                                                              "warmup_num_steps": run.warmup_steps}}
    return result


def _zero_section(run: Run) -> dict:
    params = run.problem.rules.params
    stage = run["zero_stage"]
    zero = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if stage in (1, 2):
        bucket = int(params["zero_bucket_elements"])  # the bucket size the memory pack counts
        zero.update(reduce_bucket_size=bucket, allgather_bucket_size=bucket)
    if stage == 3:  # the working set the memory pack counts
        zero.update(stage3_max_live_parameters=int(params["zero3_max_live_parameters"]),
                    stage3_prefetch_bucket_size=int(params["zero3_prefetch_bucket_elements"]),
                    stage3_param_persistence_threshold=int(params["zero3_param_persistence_threshold"]),
                    stage3_gather_16bit_weights_on_model_save=True)
    if run["offload"] in ("optimizer", "full"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if run["offload"] == "full":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return zero


def used(run: Run) -> bool:
    """Whether the plan needs DeepSpeed at all (ZeRO or offload); plain data parallelism does not."""
    return run["zero_stage"] > 0 or run["offload"] != "none"


def files(run: Run) -> dict[str, str | dict]:
    """The deepspeed target: ds_config.json and launch.sh for the team's own training script, which
    must do what the config cannot say (the notes in launch.sh)."""
    notes = ["The training script (TRAIN_SCRIPT, default train.py) takes DeepSpeed's own arguments",
             "(deepspeed.add_config_arguments: --deepspeed --deepspeed_config FILE) and passes them to deepspeed.initialize",
             f"and train with: context {run['context']} tokens, "
             + ("full" if run["grad_checkpointing"] is True else "selective" if run["grad_checkpointing"] else "no")
             + " activation checkpointing, "
             + (f"LoRA rank {run['lora_rank']} on {', '.join(run.problem.lora_targets)}"
                f"{' over an ' + run['quantization'] + ' base' if run['quantization'] != 'none' else ''}, "
                if run.lora else "every weight trained, ")
             + f"optimizer {run['optimizer']},",
             f"{'flash (tile by tile: FlashAttention or SDPA)' if run.problem.inputs['attention_flash'] else 'eager'} "
             f"attention and the {run.problem.inputs['loss']} loss (tplan's docs/physics.md says what each keeps in memory)"]
    return {"ds_config.json": config(run), "launch.sh": launch.script(run, command(run, "$HERE/ds_config.json"), notes),
            **launch.hostfile(run)}


def command(run: Run, config_file: str) -> list[str]:
    """The deepspeed launcher starting the team's script with DeepSpeed's own arguments
    (deepspeed.add_config_arguments: the --deepspeed flag and --deepspeed_config FILE)."""
    return launch.deepspeed(run) + [SCRIPT, "--deepspeed", "--deepspeed_config", config_file]


def knobs(fields: Fields) -> dict:
    """The tplan knobs a DeepSpeed JSON pins; ``dp`` (its data-parallel degree) where it states the
    global batch. The rest come from the files beside it or the goal."""
    fields.unknown((), KNOWN, ("wandb", "tensorboard", "csv_monitor", "comms_logger", "flops_profiler",
                               "checkpoint", "steps_per_print", "wall_clock", "dump_state", "memory_breakdown",
                               "autotuning", "timers"))
    found = {}
    micro = fields.integer(("train_micro_batch_size_per_gpu",))
    accum = fields.integer(("gradient_accumulation_steps",), default=1)
    batch = None if fields.section(()).get("train_batch_size") == "auto" else fields.integer(("train_batch_size",))
    if micro is not None:
        found.update(micro_batch=micro, grad_accum=accum)
        if batch is not None:
            dp, remainder = divmod(batch, micro * accum)
            if remainder or dp < 1:
                raise fields.error(("train_batch_size",), f"train_micro_batch_size_per_gpu x "
                                   f"gradient_accumulation_steps x data-parallel GPUs ({micro} x {accum} x n), not {batch}")
            found["dp"] = dp
    found["precision"] = ("bf16" if fields.flag(("bf16", "enabled")) or fields.flag(("bfloat16", "enabled"))
                          else "fp16" if fields.flag(("fp16", "enabled")) else "fp32")
    found["zero_stage"] = fields.integer(("zero_optimization", "stage"), default=0, minimum=0, maximum=3)
    offload = {part: fields.choice(("zero_optimization", f"offload_{part}", "device"), OFFLOAD_DEVICES, "none")
               for part in ("optimizer", "param")}
    found["offload"] = offload_of(offload)
    if fields.has(("optimizer", "type")):
        found["optimizer"] = fields.choice(("optimizer", "type"), {"adam": "adamw", "adamw": "adamw",
                                                                   "lion": "lion", "sgd": "sgd"})
    return found


def offload_of(devices: dict) -> str:
    """tplan's offload knob from DeepSpeed's optimizer and parameter offload devices."""
    return "full" if devices["param"] != "none" else "optimizer" if devices["optimizer"] != "none" else "none"


def auto_values(knobs: dict) -> dict:
    """What the Trainer writes over a DeepSpeed JSON's "auto" values, from the knobs of its arguments
    (or the goal's one value of each)."""
    precision = knobs.get("precision")
    return {("train_micro_batch_size_per_gpu",): knobs.get("micro_batch"),
            ("gradient_accumulation_steps",): knobs.get("grad_accum"),
            ("bf16", "enabled"): None if precision is None else precision in ("bf16", "bf16-pure"),
            ("fp16", "enabled"): None if precision is None else precision == "fp16"}


KNOWN = {"train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping",
         "bf16", "bfloat16", "fp16", "zero_optimization", "optimizer", "scheduler", "zero_allow_untested_optimizer",
         "zero_force_ds_cpu_optimizer", "prescale_gradients", "gradient_predivide_factor", "communication_data_type",
         "activation_checkpointing", "data_types", "amp", "aio", "seq_parallel_communication_data_type"}
