"""Judge: load a torchtitan job config with torchtitan 0.2's own ConfigManager (--job.config_file),
warnings as errors (a value of the wrong type is only a warning there); print what torchtitan
understood as JSON.   usage: torchtitan_config.py FILE
"""

import importlib.util
import json
import sys
import warnings
from unittest import mock

warnings.simplefilter("error", UserWarning)
if importlib.util.find_spec("triton") is None:  # its MoE kernels import triton, absent from CPU torch
    sys.modules["torchtitan.models.moe.kernels"] = mock.MagicMock()

from torchtitan.config import ConfigManager  # noqa: E402

config = ConfigManager().parse_args(["--job.config_file", sys.argv[1]])  # unknown sections and keys raise
training, parallelism = config.training, config.parallelism
if parallelism.pipeline_parallel_degree > 1:
    from torch.distributed.pipelining.schedules import get_schedule_class

    get_schedule_class(parallelism.pipeline_parallel_schedule)  # an unknown schedule raises
print(json.dumps({
    "model": [config.model.name, config.model.flavor], "converters": list(config.model.converters),
    "local_batch_size": training.local_batch_size, "global_batch_size": training.global_batch_size,
    "seq_len": training.seq_len, "mixed_precision_param": training.mixed_precision_param,
    "cpu_offload": training.enable_cpu_offload,
    "degrees": [parallelism.data_parallel_replicate_degree, parallelism.data_parallel_shard_degree,
                parallelism.tensor_parallel_degree, parallelism.context_parallel_degree,
                parallelism.pipeline_parallel_degree],
    "schedule": parallelism.pipeline_parallel_schedule, "microbatch": parallelism.pipeline_parallel_microbatch_size,
    "reshard": parallelism.fsdp_reshard_after_forward, "checkpointing": config.activation_checkpoint.mode,
    "compile": config.compile.enable, "float8_recipe": config.quantize.linear.float8.recipe_name,
    "float8_all_gather": config.quantize.linear.float8.enable_fsdp_float8_all_gather,
    "float8_precomputed_scale": config.quantize.linear.float8.precompute_float8_dynamic_scale_for_fsdp}))
