"""Hugging Face: the TRL SFT config of a plan (TrainingArguments, SFTConfig and ModelConfig keys in
one file, what `trl sft --config FILE` reads), with its DeepSpeed JSON; and such a file read back."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

from . import deepspeed, launch
from .fields import Fields
from .run import Run

OPTIMIZERS = {"adamw": "adamw_torch", "adamw-8bit": "adamw_bnb_8bit", "paged-adamw": "paged_adamw_32bit",
              "paged-adamw-8bit": "paged_adamw_8bit", "sgd": "sgd", "lion": "lion_32bit",
              "adafactor": "adafactor"}                                  # TrainingArguments.optim values
OPTIMIZERS_READ = {**{name: knob for knob, name in OPTIMIZERS.items()}, "adamw_torch_fused": "adamw",
                   "adamw_hf": "adamw", "adamw_apex_fused": "adamw", "adamw_8bit": "adamw-8bit",
                   "paged_adamw_8bit": "paged-adamw-8bit", "lion_8bit": "lion", "paged_lion_32bit": "lion",
                   "adamw_torch_4bit": "adamw-8bit", "sgd": "sgd"}
# what the Hugging Face Trainer runs (axolotl and accelerate launch it too): data parallelism with ZeRO
# or FSDP, no tensor, pipeline or context parallelism, and no selective recomputation
TRAINER_RUNS = {"tp": (1,), "pp": (1,), "cp": (1,), "vp": (1,), "grad_checkpointing": (False, True)}
# attn_implementation values transformers 4.57 and 5.x load for training (modeling_utils.AttentionInterface
# and "eager"; the kernels-community hub kernels are what `kernels` loads for flash_attention_2/3) as the
# goal's attention: FlashAttention, SDPA and FlexAttention work tile by tile and never store the s x s
# scores; eager does. The paged variants serve generation (continuous batching), not training.
ATTENTION = {"eager": "eager", "sdpa": "flash", "flash_attention_2": "flash", "flash_attention_3": "flash",
             "flex_attention": "flash", "kernels-community/flash-attn": "flash",
             "kernels-community/flash-attn3": "flash", "kernels-community/vllm-flash-attn3": "flash"}
# checkpointing kwargs that change what is recomputed (transformers 5 activation_checkpointing_kwargs:
# `every_n_layers` checkpoints every n-th layer only, `offload` keeps the saved inputs in host memory)
# at the values that keep tplan's full recomputation
CHECKPOINTING_KWARGS = {"every_n_layers": 1, "offload": False}
DEFAULTS_FILE = Path(__file__).with_name("trainer_defaults.yaml")
PEFT_DEFAULT = "peft-default"   # a LoRA config that names no modules: PEFT adapts its family's default ones
DS_FILE = "ds_config.json"
DATASET = '"${DATASET:?set DATASET to the Hugging Face dataset id to train on}"'
CONFIG_FILE = "sft_config.yaml"


def arguments(run: Run, deepspeed_file: str | None) -> dict:
    """The keys `trl sft --config` reads, valid under transformers 4.x and 5.x: batch, schedule,
    precision (the dtype the model loads in: bf16-pure loads bfloat16 weights, whose optimizer
    states are then bfloat16 too), checkpointing, optimizer, context, LoRA and quantisation."""
    result = {"model_name_or_path": run.model_id("hf"),
              "dtype": "bfloat16" if run["precision"] == "bf16-pure" else "float32",
              "per_device_train_batch_size": run["micro_batch"],
              "gradient_accumulation_steps": run["grad_accum"],
              "max_steps": run.steps, "learning_rate": run.learning_rate, "lr_scheduler_type": "constant_with_warmup",
              "warmup_steps": run.warmup_steps, "max_grad_norm": run.clipping,
              "weight_decay": run.weight_decay,
              "bf16": run["precision"] in ("bf16", "bf16-pure"), "fp16": run["precision"] == "fp16",
              "gradient_checkpointing": run["grad_checkpointing"] is True,
              "optim": OPTIMIZERS[run["optimizer"]],
              "max_length": run["context"], "packing": True,
              # ModelConfig's attention (SDPA's fused kernels never store the scores; eager does) and
              # Liger's fused linear cross-entropy for the fused loss (Trainer use_liger_kernel)
              "attn_implementation": "sdpa" if run.problem.inputs["attention_flash"] else "eager",
              "use_liger_kernel": run.problem.inputs["loss"] == "fused",
              "use_peft": run.lora}
    if run.lora:
        result.update(lora_r=run["lora_rank"], lora_alpha=2 * run["lora_rank"],
                      lora_target_modules=run.lora_modules("hf"))
    if run["quantization"] != "none":
        result.update(load_in_4bit=run["quantization"] == "nf4", load_in_8bit=run["quantization"] == "int8")
        if run["quantization"] == "nf4":
            result.update(bnb_4bit_quant_type="nf4", use_bnb_nested_quant=False)
    if deepspeed_file:
        result["deepspeed"] = deepspeed_file
    result.update(output_dir="output", report_to="none")
    return result


def files(run: Run) -> dict:
    """sft_config.yaml, ds_config.json (with "auto" where the Trainer fills values in) when the plan
    uses ZeRO or offload, and launch.sh."""
    written = {CONFIG_FILE: arguments(run, DS_FILE if deepspeed.used(run) else None)}
    if deepspeed.used(run):
        written[DS_FILE] = deepspeed.config(run, trainer=True)
    command = launch.torchrun(run) + ["-m", "trl.scripts.sft", "--config", f"$HERE/{CONFIG_FILE}",
                                      "--dataset_name", DATASET]
    return {**written, "launch.sh": launch.script(run, command, cd=True)}


def is_arguments(data: dict) -> bool:
    """Whether a mapping looks like TrainingArguments (or a TRL config built on them)."""
    return "per_device_train_batch_size" in data or "gradient_accumulation_steps" in data and "optim" in data


@functools.cache
def field_defaults() -> dict[str, list]:
    """Each field of TrainingArguments and TRL's SFTConfig, ModelConfig and ScriptArguments with its
    defaults over the transformers versions trainer_defaults.yaml lists (scripts/trainer_defaults.py
    writes it from the dataclasses; tplan does not import transformers)."""
    found = {}
    for section in yaml.safe_load(DEFAULTS_FILE.read_text()).values():
        for dataclass_name, defaults in section.items():
            for name, value in defaults.items() if dataclass_name != "versions" else ():
                found.setdefault(name, []).append(value)
    return found


def knobs(fields: Fields) -> tuple[dict, dict]:
    """(knobs, goal settings) TrainingArguments / SFTConfig / ModelConfig keys pin: the model, loss,
    attention and compile where they name them. A field tplan does not read is accepted at its
    default (a file transformers wrote lists them all) and refused otherwise, unless it is known to
    leave memory and speed alone."""
    fields.unknown((), KNOWN, IGNORED, field_defaults())
    found = {"micro_batch": fields.integer(("per_device_train_batch_size",), default=8),  # Trainer's default
             "grad_accum": fields.integer(("gradient_accumulation_steps",), default=1),
             "grad_checkpointing": _checkpointing(fields),
             "optimizer": fields.choice(("optim",), OPTIMIZERS_READ, "adamw")}
    dtype = fields.text(("dtype",)) or fields.text(("torch_dtype",)) \
        or fields.text(("model_init_kwargs", "dtype")) or fields.text(("model_init_kwargs", "torch_dtype"))
    if fields.raw(("fsdp",)) not in (None, "", False, []):
        raise fields.error(("fsdp",), "no FSDP in TrainingArguments (tplan reads FSDP from an accelerate "
                                      "config: check that file, with these arguments beside it)")
    bf16 = fields.flag(("bf16",))
    found["precision"] = ("bf16-pure" if bf16 and dtype in ("bfloat16", "bf16") else "bf16" if bf16
                          else "fp16" if fields.flag(("fp16",)) else "fp32")
    if found["precision"] == "fp32" and fields.flag(("tf32",)):
        raise fields.error(("tf32",), "tf32 false or absent with fp32 training (tplan times fp32 matmuls at the "
                                      "fp32 rate and does not model TF32's)")
    for key in ("max_length", "max_seq_length"):
        if fields.has((key,)):
            found["context"] = fields.integer((key,))
    found["lora_rank"] = fields.integer(("lora_r",), default=16) if fields.flag(("use_peft",)) else 0  # ModelConfig's r
    found["quantization"] = ("nf4" if fields.flag(("load_in_4bit",)) else
                             "int8" if fields.flag(("load_in_8bit",)) else "none")
    model = fields.text(("model_name_or_path",))
    settings = {"model": model} if model else {}
    if found["lora_rank"]:  # ModelConfig's lora_target_modules, None: PEFT's default for the family
        settings["lora_modules"] = lora_module_names(fields, ("lora_target_modules",))
    return found, {**settings, **_kernels(fields)}


def lora_module_names(fields: Fields, key_path: tuple) -> list[str]:
    """The modules a LoRA config adapts, as PEFT reads `target_modules`: a list of names, "all-linear"
    (every linear layer but the LM head: tplan's every target), or none (PEFT's default for the family)."""
    value = fields.raw(key_path)
    if value is None:
        return [PEFT_DEFAULT]
    if isinstance(value, str):
        if value != "all-linear":
            raise fields.error(key_path, f"a list of module names or all-linear (tplan does not read a pattern "
                                         f"such as {value!r})")
        return ["all-linear"]
    return fields.names(key_path)


def _checkpointing(fields: Fields) -> bool:
    """Full recomputation: activation_checkpointing (transformers 5), else its deprecated alias
    gradient_checkpointing, with kwargs that keep every layer checkpointed on the GPU."""
    for key in ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs"):
        for name, usual in CHECKPOINTING_KWARGS.items():
            if fields.raw((key, name), usual) != usual:
                raise fields.error((key, name), f"{name} {usual!r} or absent (tplan models every layer "
                                                f"recomputed from inputs kept on the GPU)")
    if fields.has(("activation_checkpointing",)):
        return fields.flag(("activation_checkpointing",))
    return fields.flag(("gradient_checkpointing",))


def _kernels(fields: Fields) -> dict:
    """The goal's loss, attention and compile as far as the file sets them."""
    settings = {}
    if fields.has(("use_liger_kernel",)):
        # The Trainer applies Liger Kernel to the model (Trainer.__init__, liger_kernel.transformers
        # _apply_liger_kernel_to_instance), whose fused_linear_cross_entropy (on unless liger_kernel_config
        # turns it off) runs the LM head and the loss chunk by chunk and never holds the logits: the goal's
        # fused loss. Its other kernels (RMSNorm, SwiGLU, RoPE) store no more than the unfused layers tplan counts.
        liger = fields.flag(("use_liger_kernel",))
        if liger and fields.raw(("liger_kernel_config", "fused_linear_cross_entropy"), True) is not True:
            raise fields.error(("liger_kernel_config", "fused_linear_cross_entropy"),
                               "true or absent (tplan does not model Liger Kernel without its fused linear "
                               "cross-entropy)")
        settings["loss"] = "fused" if liger else "standard"
    attention = _attention(fields)
    if attention:
        settings["attention"] = attention
    # a compile backend or mode sets torch_compile (TrainingArguments.__post_init__)
    backend = any(fields.has((key,)) for key in ("torch_compile_backend", "torch_compile_mode"))
    if fields.has(("torch_compile",)) or backend:
        settings["compile"] = fields.flag(("torch_compile",)) or backend
    return settings


def _attention(fields: Fields) -> str | None:
    """The goal's attention for attn_implementation (ModelConfig's, or model_init_kwargs') and the
    alignment handbook's older use_flash_attention_2 (true loads flash_attention_2), which must agree."""
    key = ("attn_implementation",) if fields.has(("attn_implementation",)) else ("model_init_kwargs", "attn_implementation")
    attention = fields.choice(key, ATTENTION)
    if fields.flag(("use_flash_attention_2",)):
        if attention == "eager":
            raise fields.error(("use_flash_attention_2",), f"false beside {key[-1]} {fields.raw(key)!r} (the two "
                                                           f"disagree)")
        attention = "flash"
    return attention


# keys read above, or known to leave memory and speed alone whatever their value
KNOWN = {"per_device_train_batch_size", "gradient_accumulation_steps", "gradient_checkpointing", "optim", "dtype",
         "torch_dtype", "model_init_kwargs", "bf16", "fp16", "max_length", "max_seq_length", "use_peft", "lora_r",
         "load_in_4bit", "load_in_8bit", "model_name_or_path", "deepspeed", "lora_alpha", "lora_target_modules",
         "lora_dropout", "bnb_4bit_quant_type", "use_bnb_nested_quant", "lora_task_type", "use_rslora",
         "trust_remote_code", "attn_implementation", "use_flash_attention_2", "model_revision", "tf32",
         "gradient_checkpointing_kwargs", "activation_checkpointing", "activation_checkpointing_kwargs", "packing",
         "packing_strategy", "padding_free", "completion_only_loss", "assistant_only_loss", "bf16_full_eval",
         "fp16_full_eval", "torch_compile", "torch_compile_backend", "torch_compile_mode", "use_liger_kernel",
         "liger_kernel_config", "per_device_eval_batch_size", "group_by_length", "remove_unused_columns", "fsdp",
         "fsdp_config", "router_aux_loss_coef", "ignore_bias_buffers"}
# prefixes of keys that leave memory and speed alone (logging, saving, evaluation, hub, schedule, data).
# Keys that change them and that tplan does not model (activation_offloading, auto_find_batch_size,
# optim_target_modules, torch_empty_cache_steps, use_cpu, full_determinism, lora_modules_to_save, use_dora
# ...) are none of these: trainer_defaults.yaml accepts them at their defaults only.
IGNORED = ("logging", "save", "eval", "hub", "push_to_hub", "report_to", "output_dir", "overwrite_output_dir",
           "run_name", "seed", "data_seed", "dataloader", "dataset", "num_train_epochs", "max_steps", "lr_scheduler",
           "warmup", "learning_rate", "weight_decay", "adam_", "max_grad_norm", "label", "do_", "resume",
           "load_best", "metric_for_best", "greater_is_better", "prediction_loss_only", "include_", "disable_tqdm",
           "ddp_", "local_rank", "log_", "optim_args", "chat_template", "eos_token", "pad_token",
           "pad_to_multiple_of", "shuffle", "average_tokens_across_devices", "skip_memory_metrics",
           "accelerator_config", "ignore_data_skip", "restore_callback", "neftune", "model_name", "model_init",
           "label_names", "length_column", "batch_eval", "jit_mode_eval", "past_index", "project", "trackio",
           "use_legacy_prediction_loop", "split_batches", "tpu_", "debug", "fp16_opt_level", "half_precision_backend",
           "fp16_backend", "predict_with_generate", "generation_", "use_cache", "train_sampling_strategy",
           "enable_jit_checkpoint", "gradient_checkpointing_use_reentrant", "ray_scope",
           # recipe keys of the alignment handbook and TRL examples that shape the data, not the step
           "preprocessing", "tokenizer_name_or_path", "system_prompt", "auto_insert_empty_system_msg", "text_column",
           "truncation", "padding", "wandb", "max_prompt_length", "max_completion_length")
