"""Judge: load an accelerate config as `accelerate launch --config_file` does (its loader, its
argument merging and the environment it prepares for each rank), build the plugins each rank
builds from it, and print what accelerate understood as JSON.   usage: accelerate_config.py FILE
"""

import json
import os
import sys
from unittest import mock

import accelerate.utils.launch as launching
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin, patch_environment
from torch.distributed.fsdp import CPUOffloadPolicy

path = os.path.abspath(sys.argv[1])
os.chdir(os.path.dirname(path))  # launch.sh runs from the file's folder
config = load_config_from_file(path)  # unknown top-level keys and distributed types raise
parser = launch_command_parser()
known = {action.dest for action in parser._actions}
for section, prefix in (("fsdp_config", "fsdp_"), ("fp8_config", "fp8_"), ("deepspeed_config", "")):
    for key in getattr(config, section, None) or {}:  # the launcher silently drops unknown nested keys
        name = key if not prefix or key.startswith(prefix) else prefix + key
        assert name in known, f"{section}.{key} is not an accelerate launch setting"
assert config.mixed_precision in (None, "no", "fp16", "bf16", "fp8"), config.mixed_precision
args, defaults, precision_from_config = _validate_launch_command(parser.parse_args(["--config_file", path, "train.py"]))
with mock.patch.object(launching, "is_fp8_available", lambda: True):  # Transformer Engine needs a GPU
    if args.use_deepspeed:
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if precision_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, environment = launching.prepare_deepspeed_cmd_env(args)
    else:
        environment = launching.prepare_multi_gpu_env(args)
result = {"distributed_type": str(config.distributed_type.value), "num_processes": config.num_processes,
          "num_machines": config.num_machines, "mixed_precision": config.mixed_precision}
with patch_environment(**environment):
    if config.distributed_type == DistributedType.FSDP:
        plugin = FullyShardedDataParallelPlugin()
        result["fsdp"] = {"version": plugin.fsdp_version, "reshard_after_forward": plugin.reshard_after_forward,
                          # FSDP2: a CPUOffloadPolicy offloads, the base OffloadPolicy does not (and is truthy);
                          # FSDP1: CPUOffload(offload_params=...)
                          "offload_params": isinstance(plugin.cpu_offload, CPUOffloadPolicy)
                          if plugin.fsdp_version == 2 else bool(getattr(plugin.cpu_offload, "offload_params", False)),
                          "activation_checkpointing": plugin.activation_checkpointing}
    if config.distributed_type == DistributedType.DEEPSPEED:
        plugin = DeepSpeedPlugin()
        result["deepspeed"] = {"config_file": plugin.hf_ds_config.config_file if hasattr(plugin.hf_ds_config,
                               "config_file") else None, "zero_stage": plugin.zero_stage}
    if config.mixed_precision == "fp8":
        from accelerate.utils.dataclasses import FP8BackendType

        result["fp8_backend"] = FP8BackendType(environment.get("ACCELERATE_FP8_BACKEND", "NO").upper()).value
        result["fp8_format"] = environment.get("ACCELERATE_FP8_FORMAT")
print(json.dumps(result))
