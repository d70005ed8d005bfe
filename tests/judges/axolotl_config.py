"""Judge: validate an axolotl YAML with axolotl's own config schema (validate_config, as `axolotl
train` runs it before loading a model), with the capabilities of the GPUs it is meant for, plus
the checks the schema leaves out (it ignores unknown keys and optimizer names); print what axolotl
understood as JSON.   usage: axolotl_config.py FILE
"""

import json
import os
import sys
from unittest import mock

import yaml
from axolotl.integrations.base import PluginManager
from axolotl.utils.config import merge_input_args, validate_config
from axolotl.utils.dict import DictDefault
from axolotl.utils.schemas.config import AxolotlInputConfig
from axolotl.utils.schemas.enums import CustomSupportedOptimizers
from axolotl.utils.schemas.fsdp import FSDPConfig
from transformers.training_args import OptimizerNames

# what `axolotl train` probes on the machine it runs on (cli/config.py gpu_capabilities): an H100 node
GPU = {"bf16": True, "fp8": True, "tf32": True, "n_gpu": 8, "n_node": 1, "compute_capability": "sm_90"}
ENVIRONMENT = {"torch_version": "2.7.0"}


def names(model) -> set:
    found = set()
    for name, field in model.model_fields.items():
        found |= {name, *(alias for alias in (field.alias, field.validation_alias) if isinstance(alias, str))}
    return found


path = os.path.abspath(sys.argv[1])
os.chdir(os.path.dirname(path))
raw = yaml.safe_load(open(path))
schema = AxolotlInputConfig
if raw.get("plugins"):  # as `axolotl train` registers them: their arguments join the schema (merge_input_args)
    for plugin in raw["plugins"]:
        PluginManager.get_instance().register(plugin)
    schema = merge_input_args()[1]
unknown = set(raw) - names(schema)
assert not unknown, f"keys axolotl does not know: {sorted(unknown)}"
assert not set(raw.get("fsdp_config") or {}) - names(FSDPConfig), raw.get("fsdp_config")
optimizers = {name.value for name in OptimizerNames} | {name.value for name in CustomSupportedOptimizers}
assert raw.get("optimizer") in optimizers, raw.get("optimizer")
assert not (raw.get("deepspeed") and raw.get("fsdp_config")), "deepspeed and fsdp_config together"
if raw.get("deepspeed"):
    assert os.path.isfile(raw["deepspeed"]), raw["deepspeed"]
with mock.patch("axolotl.utils.schemas.config.is_fp8_available", lambda: True):
    config = validate_config(DictDefault(raw), capabilities=GPU, env_capabilities=ENVIRONMENT)
print(json.dumps({key: config.get(key) for key in (
    "base_model", "micro_batch_size", "gradient_accumulation_steps", "sequence_len", "adapter", "lora_r",
    "lora_target_modules", "load_in_4bit", "load_in_8bit", "optimizer", "bf16", "bfloat16", "fp16",
    "gradient_checkpointing", "deepspeed", "fsdp_version", "max_steps", "attn_implementation", "plugins",
    "liger_fused_linear_cross_entropy")}, default=str))
