"""axolotl: the YAML of a fine-tune plan (LoRA/QLoRA, DeepSpeed or FSDP2), and such a YAML read back.
axolotl runs the Hugging Face Trainer, so its DeepSpeed JSON is the Trainer's ("auto" values)."""

from __future__ import annotations

import yaml

from . import deepspeed, huggingface, launch
from .fields import Fields
from .run import Run

CONFIG_FILE = "axolotl.yaml"
HEADER = ("# Written by tplan. Replace the dataset below with yours (axolotl's `datasets` entries:\n"
          "# https://docs.axolotl.ai/docs/dataset-formats/); everything else is the plan.\n")
PLACEHOLDER_DATASET = {"path": "your-org/your-dataset", "type": "alpaca"}
# keys that change memory or speed in ways tplan does not model: refused unless off
UNMODELLED = {"tensor_parallel_size": 1, "context_parallel_size": 1, "sequence_parallel_degree": 1,
              "activation_offloading": False, "relora": None, "fp8": False}
# axolotl 0.19's attention backends (utils/schemas/config.py attn_implementation) beyond transformers'
# as the goal's attention: xformers' memory-efficient kernel, SageAttention and the torch-native
# FlashAttention work tile by tile like FlashAttention; its deprecated boolean flags name them too
ATTENTION = {**huggingface.ATTENTION, "flash_attention_4": "flash", "flash_attention_torch": "flash",
             "xformers": "flash", "sage": "flash"}
ATTENTION_FLAGS = {"flash_attention": "flash", "sdp_attention": "flash", "flex_attention": "flash",
                   "xformers_attention": "flash", "sage_attention": "flash", "eager_attention": "eager"}
# the plugins that fuse the LM head with the loss so that the logits are never held whole: Liger's
# fused linear cross-entropy (on with liger_fused_linear_cross_entropy) and Apple's Cut Cross-Entropy
# (cut_cross_entropy, true by default with its plugin; integrations/*/args.py)
LIGER = "axolotl.integrations.liger.LigerPlugin"
FUSED_LOSS_PLUGINS = {LIGER: ("liger_fused_linear_cross_entropy", False),
                      "axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin": ("cut_cross_entropy", True)}


def config(run: Run) -> dict:
    """The axolotl keys of the plan (axolotl 0.19's config schema)."""
    precision = run["precision"]
    result = {"base_model": run.model_id("axolotl"), "sequence_len": run["context"], "sample_packing": True,
              "micro_batch_size": run["micro_batch"], "gradient_accumulation_steps": run["grad_accum"],
              "num_epochs": 1, "max_steps": run.steps, "learning_rate": run.learning_rate,
              "lr_scheduler": "constant_with_warmup", "warmup_steps": run.warmup_steps,
              "max_grad_norm": run.clipping, "optimizer": huggingface.OPTIMIZERS[run["optimizer"]],
              "weight_decay": run.weight_decay,
              # bf16 is autocast over fp32 weights; bfloat16 loads the weights in bf16 (no fp32 master copy)
              "bf16": precision == "bf16", "bfloat16": precision == "bf16-pure", "fp16": precision == "fp16",
              "gradient_checkpointing": run["grad_checkpointing"] is True,
              "attn_implementation": "flash_attention_2" if run.problem.inputs["attention_flash"] else "eager"}
    if run.lora:
        result.update(adapter="qlora" if run["quantization"] == "nf4" else "lora", lora_r=run["lora_rank"],
                      lora_alpha=2 * run["lora_rank"], lora_dropout=0.0,
                      lora_target_modules=run.lora_modules("axolotl"))
    result.update(load_in_4bit=run["quantization"] == "nf4", load_in_8bit=run["quantization"] == "int8")
    if run.problem.inputs["loss"] == "fused":
        result.update(plugins=[LIGER], liger_fused_linear_cross_entropy=True)
    if run.problem.inputs["framework"] == "fsdp" and run["zero_stage"] >= 2:
        result["gradient_checkpointing"] = False  # FSDP checkpoints the layers it wraps
        result.update(fsdp_version=2, fsdp_config={
            "reshard_after_forward": run["zero_stage"] == 3, "offload_params": run["offload"] == "full",
            "activation_checkpointing": run["grad_checkpointing"] is True,
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "state_dict_type": "SHARDED_STATE_DICT"})
    elif deepspeed.used(run):
        result["deepspeed"] = huggingface.DS_FILE
    result.update(datasets=[dict(PLACEHOLDER_DATASET)], output_dir="./outputs")
    return result


def files(run: Run) -> dict:
    """axolotl.yaml, ds_config.json under DeepSpeed, and launch.sh (`axolotl train`)."""
    written = {CONFIG_FILE: HEADER + yaml.safe_dump(config(run), sort_keys=False)}
    if run.problem.inputs["framework"] == "deepspeed" and deepspeed.used(run):
        written[huggingface.DS_FILE] = deepspeed.config(run, trainer=True)
    # axolotl hands these to `accelerate launch`, whose --num_processes counts every node's processes
    command = ["axolotl", "train", f"$HERE/{CONFIG_FILE}", "--num-processes", str(run["gpus"])]
    if run.nodes > 1:
        command += ["--num-machines", str(run.nodes), "--machine-rank", '"$NODE_RANK"',
                    "--main-process-ip", '"$MASTER_ADDR"']
    return {**written, "launch.sh": launch.script(run, command, cd=True)}


def knobs(fields: Fields) -> tuple[dict, dict]:
    """(knobs, goal settings) an axolotl YAML pins: batch, context, precision, checkpointing, optimizer,
    LoRA/QLoRA, FSDP sharding and offload; its base model and framework."""
    for key, off in UNMODELLED.items():
        if fields.raw((key,)) not in (None, off):
            raise fields.error((key,), f"{key} {off} (tplan does not model it in an axolotl config; plan it "
                                       f"with a tplan goal)")
    adapter = fields.choice(("adapter",), {"lora": "lora", "qlora": "qlora"})
    found = {"micro_batch": fields.integer(("micro_batch_size",), default=1),
             "grad_accum": fields.integer(("gradient_accumulation_steps",), default=1),
             "context": fields.integer(("sequence_len",), default=2048),       # axolotl's default
             "optimizer": fields.choice(("optimizer",), huggingface.OPTIMIZERS_READ, "adamw"),
             "lora_rank": fields.integer(("lora_r",), default=8) if adapter else 0,
             "quantization": ("nf4" if fields.flag(("load_in_4bit",)) else
                              "int8" if fields.flag(("load_in_8bit",)) else "none")}
    found["precision"] = ("bf16-pure" if fields.flag(("bfloat16",)) else
                          "bf16" if fields.raw(("bf16",)) in (True, "auto") else
                          "fp16" if fields.flag(("fp16",)) or fields.flag(("float16",)) else "fp32")
    checkpointing = fields.raw(("gradient_checkpointing",), False)
    if checkpointing not in (True, False):
        raise fields.error(("gradient_checkpointing",), f"true or false (tplan does not model {checkpointing!r})")
    found["grad_checkpointing"] = checkpointing
    settings = {"model": fields.text(("base_model",)), **_kernels(fields)}
    if adapter and fields.flag(("lora_target_linear",)):
        settings["lora_modules"] = ["all-linear"]
    elif adapter:
        settings["lora_modules"] = huggingface.lora_module_names(fields, ("lora_target_modules",))
    if fields.section(("fsdp_config",)):
        settings["framework"] = "fsdp"
        found["zero_stage"] = 3 if fields.flag(("fsdp_config", "reshard_after_forward"), True) else 2
        found["offload"] = "full" if fields.flag(("fsdp_config", "offload_params")) else "none"
        found["grad_checkpointing"] = checkpointing or fields.flag(("fsdp_config", "activation_checkpointing"))
    elif not fields.has(("deepspeed",)):
        found.update(zero_stage=0, offload="none")
    return found, settings


def _kernels(fields: Fields) -> dict:
    """The goal's attention, loss and compile as far as the config sets them."""
    settings = {}
    attention = fields.choice(("attn_implementation",), ATTENTION)
    flags = [meaning for flag, meaning in ATTENTION_FLAGS.items() if fields.flag((flag,))]
    if attention or flags:
        settings["attention"] = attention or flags[0]
    plugins = fields.names(("plugins",))
    if LIGER in plugins and fields.raw(("liger_cross_entropy",)) is True:
        raise fields.error(("liger_cross_entropy",), "false or absent (tplan models Liger's fused linear "
                                                     "cross-entropy, not its cross-entropy kernel alone)")
    for plugin, (key, default) in FUSED_LOSS_PLUGINS.items():
        if plugin in plugins:  # with the plugin's fused loss off, Hugging Face's standard loss runs
            settings["loss"] = "fused" if fields.raw((key,), default) is True else settings.get("loss", "standard")
    compiled = fields.raw(("torch_compile",))
    if compiled is not None:
        if compiled not in (True, False, "auto"):
            raise fields.error(("torch_compile",), f"true, false or auto, not {compiled!r}")
        settings["compile"] = compiled is not False  # auto compiles where the torch version can
    return settings
