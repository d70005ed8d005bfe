"""accelerate: the `accelerate launch` config of a plan (DeepSpeed through the plan's DeepSpeed JSON,
or FSDP2 with its fp8 recipe), with the TRL SFT config it runs; and such a config read back."""

from __future__ import annotations

from . import deepspeed, huggingface, launch
from .fields import Fields
from .run import Run

CONFIG_FILE = "accelerate.yaml"
PRECISIONS = {"fp32": "no", "fp16": "fp16", "bf16": "bf16", "bf16-pure": "bf16", "fp8": "fp8"}
# Transformer Engine's delayed-scaling recipe as accelerate names it (accelerate utils/dataclasses.py
# TERecipeKwargs; TE's DelayedScaling defaults margin 0, HYBRID = E4M3 forward, E5M2 backward)
FP8_RECIPE = {"backend": "TE", "fp8_format": "HYBRID", "amax_history_len": 1024, "amax_compute_algo": "max",
              "margin": 0, "interval": 1}


def runs(problem) -> dict:
    """FSDP2 or DeepSpeed without tensor, pipeline or context parallelism; fp8 (TE, per-tensor scaling,
    16-bit weight gathers) only under FSDP: a DeepSpeed JSON file leaves accelerate no mixed_precision
    to set."""
    narrowed = dict(huggingface.TRAINER_RUNS)
    if (problem.inputs["framework"] == "deepspeed" or problem.inputs["fp8_recipe"] != "tensorwise"
            or problem.inputs["fp8_all_gather"]):
        narrowed["precision"] = ("fp32", "fp16", "bf16", "bf16-pure")
    return narrowed


def config(run: Run) -> dict:
    result = {"compute_environment": "LOCAL_MACHINE", "num_machines": run.nodes, "num_processes": run["gpus"],
              "machine_rank": 0, "main_process_port": launch.PORT, "use_cpu": False}
    fsdp = run.problem.inputs["framework"] == "fsdp"
    if fsdp and run["zero_stage"] >= 2:
        result.update(distributed_type="FSDP", mixed_precision=PRECISIONS[run["precision"]],
                      fsdp_config={"fsdp_version": 2, "fsdp_reshard_after_forward": run["zero_stage"] == 3,
                                   "fsdp_offload_params": run["offload"] == "full",
                                   "fsdp_activation_checkpointing": run["grad_checkpointing"] is True,
                                   "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                                   "fsdp_state_dict_type": "SHARDED_STATE_DICT",
                                   "fsdp_cpu_ram_efficient_loading": True})
    elif not fsdp and deepspeed.used(run):
        result.update(distributed_type="DEEPSPEED",
                      deepspeed_config={"deepspeed_config_file": huggingface.DS_FILE,
                                        "zero3_init_flag": run["zero_stage"] == 3})
    else:
        result.update(distributed_type="MULTI_GPU" if run["gpus"] > 1 else "NO",
                      mixed_precision=PRECISIONS[run["precision"]])
    if run["precision"] == "fp8":
        result["fp8_config"] = dict(FP8_RECIPE)
    return result


def files(run: Run) -> dict:
    """accelerate.yaml, sft_config.yaml, ds_config.json under DeepSpeed, and launch.sh."""
    accelerate_config = config(run)
    ds_file = accelerate_config["distributed_type"] == "DEEPSPEED"
    arguments = huggingface.arguments(run, deepspeed_file=None)
    if accelerate_config["distributed_type"] == "FSDP":  # FSDP checkpoints the layers it wraps
        arguments["gradient_checkpointing"] = False
    written = {CONFIG_FILE: accelerate_config, huggingface.CONFIG_FILE: arguments}
    if ds_file:
        ds_config = deepspeed.config(run, trainer=True)  # accelerate sets no mixed precision beside it:
        ds_config.update(bf16={"enabled": run["precision"] in ("bf16", "bf16-pure")},  # the file says it
                         fp16={"enabled": run["precision"] == "fp16"})
        written[huggingface.DS_FILE] = ds_config
    command = ["accelerate", "launch", "--config_file", f"$HERE/{CONFIG_FILE}"]
    if run.nodes > 1:
        command += ["--machine_rank", '"$NODE_RANK"', "--main_process_ip", '"$MASTER_ADDR"']
    command += ["-m", "trl.scripts.sft", "--config", f"$HERE/{huggingface.CONFIG_FILE}", "--dataset_name",
                huggingface.DATASET]
    return {**written, "launch.sh": launch.script(run, command, cd=True)}


KNOWN = {"compute_environment", "distributed_type", "num_machines", "num_processes", "machine_rank",
         "main_process_ip", "main_process_port", "rdzv_backend", "same_network", "gpu_ids", "mixed_precision",
         "fp8_config", "deepspeed_config", "fsdp_config", "use_cpu", "debug", "downcast_bf16", "enable_cpu_affinity",
         "main_training_function", "dynamo_config", "ipex_config", "mpirun_config", "parallelism_config"}


# the keys `accelerate config` writes under deepspeed_config and fsdp_config (accelerate 1.16,
# commands/config/cluster.py), besides those read below: launch, saving and wrapping details
DEEPSPEED_KEYS = {"deepspeed_config_file", "zero_stage", "offload_optimizer_device", "offload_param_device",
                  "offload_optimizer_nvme_path", "offload_param_nvme_path", "gradient_accumulation_steps",
                  "gradient_clipping", "zero3_save_16bit_model", "zero3_init_flag", "deepspeed_moe_layer_cls_names",
                  "deepspeed_multinode_launcher", "deepspeed_hostfile", "deepspeed_exclusion_filter",
                  "deepspeed_inclusion_filter"}
FSDP_KEYS = {"fsdp_version", "fsdp_reshard_after_forward", "fsdp_sharding_strategy", "fsdp_offload_params",
             "fsdp_auto_wrap_policy", "fsdp_transformer_layer_cls_to_wrap", "fsdp_min_num_params",
             "fsdp_backward_prefetch", "fsdp_state_dict_type", "fsdp_forward_prefetch", "fsdp_use_orig_params",
             "fsdp_cpu_ram_efficient_loading", "fsdp_sync_module_states", "fsdp_activation_checkpointing"}
# FSDP1's sharding strategies as ZeRO stages; the hybrid ones shard within a node only (below)
SHARDING = {"FULL_SHARD": 3, "SHARD_GRAD_OP": 2, "NO_SHARD": 0, "HYBRID_SHARD": 3, "_HYBRID_SHARD_ZERO2": 2,
            "1": 3, "2": 2, "3": 0, "4": 3, "5": 2}
HYBRID = ("HYBRID_SHARD", "_HYBRID_SHARD_ZERO2", "4", "5")


def knobs(fields: Fields) -> tuple[dict, dict]:
    """(knobs, goal settings) an accelerate config pins: GPUs, precision, sharding, offload,
    checkpointing, accumulation, and the framework. Tensor, context or replicated data parallel sizes
    (parallelism_config), sharding within a node only across several nodes, and Megatron-LM are
    refused: tplan does not read them from an accelerate config."""
    fields.unknown((), KNOWN, ("tpu_",))
    fields.unknown(("deepspeed_config",), DEEPSPEED_KEYS)
    fields.unknown(("fsdp_config",), FSDP_KEYS)
    for key, size in fields.section(("parallelism_config",)).items():
        if key.endswith(("_tp_size", "_cp_size", "_sp_size", "_replicate_size")) and size not in (1, None):
            raise fields.error(("parallelism_config", key), "1 (tplan reads tensor, context and replicated data "
                                                            "parallelism from a torchtitan or tplan config, not "
                                                            "accelerate's)")
    kind = fields.choice(("distributed_type",), {"NO": "none", "MULTI_GPU": "ddp", "DEEPSPEED": "deepspeed",
                                                 "FSDP": "fsdp"}, "none")
    found = {"gpus": fields.integer(("num_processes",), default=1)}
    mixed = fields.choice(("mixed_precision",), {"no": "fp32", "fp16": "fp16", "bf16": "bf16", "fp8": "fp8"})
    settings = {}
    if kind == "fsdp":
        settings["framework"] = "fsdp"
        version = fields.integer(("fsdp_config", "fsdp_version"), default=1, maximum=2)
        if version == 2:
            found["zero_stage"] = 3 if fields.flag(("fsdp_config", "fsdp_reshard_after_forward"), True) else 2
        else:
            found["zero_stage"] = fields.choice(("fsdp_config", "fsdp_sharding_strategy"), SHARDING, 3)
            strategy = str(fields.raw(("fsdp_config", "fsdp_sharding_strategy"), "")).upper()
            if strategy in HYBRID and fields.integer(("num_machines",), default=1) > 1:
                raise fields.error(("fsdp_config", "fsdp_sharding_strategy"),
                                   "a strategy that shards over every GPU (tplan does not model sharding within "
                                   "each node and replicating across nodes)")
        found["offload"] = "full" if fields.flag(("fsdp_config", "fsdp_offload_params")) else "none"
        found["grad_checkpointing"] = fields.flag(("fsdp_config", "fsdp_activation_checkpointing"))
    elif kind == "deepspeed" and fields.has(("deepspeed_config", "deepspeed_config_file")):
        settings["framework"] = "deepspeed"  # the DeepSpeed JSON it names says the rest
    elif kind == "deepspeed":
        settings["framework"] = "deepspeed"
        found["zero_stage"] = fields.integer(("deepspeed_config", "zero_stage"), default=0, minimum=0, maximum=3)
        if fields.has(("deepspeed_config", "gradient_accumulation_steps")):  # else the Trainer arguments' (or 1)
            found["grad_accum"] = fields.integer(("deepspeed_config", "gradient_accumulation_steps"))
        offload = {part: fields.choice(("deepspeed_config", f"offload_{part}_device"), deepspeed.OFFLOAD_DEVICES,
                                       "none") for part in ("optimizer", "param")}
        found["offload"] = deepspeed.offload_of(offload)
    else:
        found.update(zero_stage=0, offload="none")
    if mixed is not None:
        found["precision"] = mixed
    return found, settings
