"""torchtune: a recipe YAML read back into tplan knobs (torchtune is read, not written: its recipes
are Python files that a config only parameterises)."""

from __future__ import annotations

import re

from .fields import Fields

OPTIMIZERS = {"torch.optim.AdamW": "adamw", "torch.optim.Adam": "adamw", "torch.optim.SGD": "sgd",
              "bitsandbytes.optim.PagedAdamW8bit": "paged-adamw-8bit", "bitsandbytes.optim.PagedAdamW": "paged-adamw",
              "bitsandbytes.optim.PagedAdamW32bit": "paged-adamw", "bitsandbytes.optim.AdamW8bit": "adamw-8bit",
              "torchao.optim.AdamW8bit": "adamw-8bit", "bitsandbytes.optim.Lion": "lion"}
PRECISIONS = {"bf16": "bf16-pure", "fp32": "fp32"}     # torchtune trains bf16 weights with bf16 states
SHARDING = {"FULL_SHARD": 3, "SHARD_GRAD_OP": 2, "NO_SHARD": 0}
LOSSES = {"CEWithChunkedOutputLoss": "chunked", "LinearCrossEntropyLoss": "fused"}
LORA_TARGETS = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "output_proj": "o"}


def is_recipe(data: dict) -> bool:
    return isinstance(data.get("model"), dict) and "_component_" in data["model"]


def knobs(fields: Fields) -> tuple[dict, dict]:
    """(knobs, goal settings) a torchtune recipe pins: batch, precision, checkpointing, optimizer,
    LoRA/QLoRA, sharding; and its model, loss, compile and optimizer-in-backward."""
    builder = fields.text(("model", "_component_"))
    name = builder.rsplit(".", 1)[-1]
    quantized = name.startswith("qlora_")
    base = re.sub(r"_(base|instruct)$", "", re.sub(r"^q?lora_", "", name))
    lora = name != base and re.match(r"^q?lora_", name) is not None
    found = {"micro_batch": fields.integer(("batch_size",)),
             "grad_accum": fields.integer(("gradient_accumulation_steps",), default=1),
             "precision": fields.choice(("dtype",), PRECISIONS, "bf16-pure"),
             "grad_checkpointing": fields.flag(("enable_activation_checkpointing",)),
             "lora_rank": fields.integer(("model", "lora_rank"), default=8) if lora else 0,
             "quantization": "nf4" if quantized else "none",
             "zero_stage": fields.choice(("fsdp_sharding_strategy",), SHARDING, 3),
             "offload": "full" if fields.flag(("fsdp_cpu_offload",)) else "none"}
    optimizer = fields.text(("optimizer", "_component_"), "torch.optim.AdamW")
    if optimizer not in OPTIMIZERS:
        raise fields.error(("optimizer", "_component_"), f"one of {', '.join(OPTIMIZERS)}, not {optimizer!r}")
    found["optimizer"] = OPTIMIZERS[optimizer]
    if fields.has(("tokenizer", "max_seq_len")):
        found["context"] = fields.integer(("tokenizer", "max_seq_len"))
    loss = fields.text(("loss", "_component_"), "")
    settings = {"model": base, "framework": "fsdp", "compile": fields.flag(("compile",)),
                "optimizer_in_backward": fields.flag(("optimizer_in_bwd",)),
                "loss": next((kind for suffix, kind in LOSSES.items() if loss.endswith(suffix)), "standard")}
    if lora:
        targets = [LORA_TARGETS[module] for module in fields.names(("model", "lora_attn_modules"))
                   if module in LORA_TARGETS]
        if fields.flag(("model", "apply_lora_to_mlp")):
            targets += ["gate", "up", "down"]
        settings["lora_targets"] = targets or ["q", "v"]
    return found, settings
