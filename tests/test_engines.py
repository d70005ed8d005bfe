"""The files tplan writes for each engine, loaded by that engine's own code (tests/judges): the
Trainer with DeepSpeed under transformers 4.x and 5.x, `trl sft`, `accelerate launch`, axolotl's
schema, torchtitan's config manager and DeepSpeed's parser - and what they understood is the plan."""

from __future__ import annotations

import argparse
import json
import shlex

import deepspeed
import deepspeed.comm
import pytest
from accelerate.commands.launch import launch_command_parser
from deepspeed.runtime.config import DeepSpeedConfig

from conftest import ROOT, run_cli, run_json

HF_CONFIGS = ROOT / "tests" / "data" / "hf_configs"
FULL = {"model": "llama-3.2-1b", "task": "finetune", "data": {"tokens": 5e8},
        "hardware": {"gpu": "a100-40gb", "gpus_per_node": 4},
        "knobs": {"precision": "bf16", "context": 2048, "lora_rank": 0, "zero_stage": [2, 3],
                  "offload": ["none", "optimizer"], "gpus": 4, "tp": 1, "pp": 1,
                  "grad_checkpointing": True, "micro_batch": [1, 2, 4], "grad_accum": [1, 4]}}
QLORA = {"model": "microsoft/Phi-3-mini-4k-instruct", "task": "finetune", "data": {"tokens": 2e7},
         "hardware": {"gpu": "rtx-4090"},
         "knobs": {"quantization": "nf4", "lora_rank": 16, "optimizer": "paged-adamw-8bit", "context": 2048,
                   "precision": "bf16"}}
LORA_GPT2 = {"model": "gpt2", "task": "finetune", "data": {"tokens": 2e7}, "hardware": {"gpu": "a10"},
             "knobs": {"lora_rank": 8, "quantization": "none", "context": 1024}}
FSDP_FP8 = {"model": "llama-3.1-8b", "task": "pretrain", "framework": "fsdp", "data": {"tokens": 2e9},
            "hardware": {"gpu": "h100-sxm", "gpus_per_node": 8},
            "knobs": {"precision": "fp8", "context": 4096, "zero_stage": 3, "offload": "none"}}
PIPELINED = {"model": "llama-3.1-8b", "task": "pretrain", "framework": "fsdp", "compile": True,
             "data": {"tokens": 2e10}, "hardware": {"gpu": "h100-sxm", "gpus_per_node": 8, "nodes": 2},
             "knobs": {"precision": "fp8", "context": 8192, "tp": 2, "pp": 2, "vp": 2, "zero_stage": 2,
                       "offload": "none", "grad_checkpointing": "selective", "micro_batch": [1, 2]}}


def emitted(tmp_goal, tmp_path, goal: dict, target: str) -> tuple[dict, object]:
    """The plan `solve --emit TARGET` answers and the folder of its files."""
    code, plan = run_json("solve", tmp_goal(goal), "--emit", target, "-o", tmp_path / "out", "--no-explain")
    assert code == 0, plan
    assert plan["emitted"]["targets"] == [target]
    return plan["config"], tmp_path / "out" / target


@pytest.mark.parametrize("transformers", ["4", "5"])
@pytest.mark.parametrize("goal", ["full", "qlora", "lora-gpt2"])
def test_the_trainer_loads_the_trl_config_and_its_deepspeed_json_together(tmp_goal, tmp_path, judge, goal,
                                                                         transformers):
    goal, architecture = {"full": (FULL, "llama-3.1-8b"), "qlora": (QLORA, "phi-3-mini"),
                          "lora-gpt2": (LORA_GPT2, "gpt2")}[goal]
    config, folder = emitted(tmp_goal, tmp_path, goal, "hf")
    seen = judge("hf_trainer.py", folder / "sft_config.yaml", HF_CONFIGS / f"{architecture}.json",
                 packages="transformers5" if transformers == "5" else None)
    assert seen["transformers"].startswith(transformers)
    assert (seen["micro_batch"], seen["grad_accum"], seen["max_length"]) == \
        (config["micro_batch"], config["grad_accum"], config["context"])
    assert seen["bf16"] == (config["precision"] in ("bf16", "bf16-pure")) and seen["fp16"] == (config["precision"] == "fp16")
    assert seen["gradient_checkpointing"] == (config["grad_checkpointing"] is True)
    assert (seen["lora_r"] if seen["use_peft"] else 0) == config["lora_rank"]
    assert seen["load_in_4bit"] == (config["quantization"] == "nf4")
    if config["zero_stage"] or config["offload"] != "none":
        ds = seen["deepspeed"]
        assert (ds["zero_stage"], ds["micro_batch"], ds["grad_accum"]) == \
            (config["zero_stage"], config["micro_batch"], config["grad_accum"])
        assert ds["offload_optimizer"] == (config["offload"] != "none") and ds["bf16"] == seen["bf16"]
    if config["lora_rank"]:
        assert seen["lora_params"] > 0


@pytest.mark.parametrize("transformers", ["4", "5"])
def test_the_trainer_and_axolotl_load_the_goals_attention_and_fused_loss(tmp_goal, tmp_path, judge, transformers):
    """Eager attention (the s x s scores stored) and the fused loss (Liger's linear cross-entropy) are
    what the engines load, not only what the side file says."""
    goal = {**LORA_GPT2, "model": "llama-3.2-1b", "attention": "eager", "loss": "fused"}
    _, folder = emitted(tmp_goal, tmp_path, goal, "hf")
    seen = judge("hf_trainer.py", folder / "sft_config.yaml", HF_CONFIGS / "llama-3.1-8b.json",
                 packages="transformers5" if transformers == "5" else None)
    assert (seen["attn_implementation"], seen["use_liger_kernel"]) == ("eager", True)
    _, folder = emitted(tmp_goal, tmp_path / transformers, goal, "axolotl")
    seen = judge("axolotl_config.py", folder / "axolotl.yaml", packages="axolotl")
    assert seen["attn_implementation"] == "eager" and seen["liger_fused_linear_cross_entropy"] is True
    assert seen["plugins"] == ["axolotl.integrations.liger.LigerPlugin"]


def test_lora_targets_are_the_architectures_own_modules(tmp_goal, tmp_path, judge):
    """Phi-3 fuses q, k, v and gate, up: its adapters sit on qkv_proj and gate_up_proj (trained whole),
    not on q_proj ... down_proj, which it does not have."""
    config, folder = emitted(tmp_goal, tmp_path, {**QLORA, "knobs": {**QLORA["knobs"], "lora_rank": 8}}, "hf")
    seen = judge("hf_trainer.py", folder / "sft_config.yaml", HF_CONFIGS / "phi-3-mini.json")
    layers, hidden, ffn = 32, 3072, 8192  # phi-3-mini config.json
    per_layer = (hidden + 3 * hidden) + (hidden + hidden) + (hidden + 2 * ffn) + (ffn + hidden)
    assert seen["lora_params"] == 8 * layers * per_layer


FSDP_OFFLOAD = {**FSDP_FP8, "model": "llama-3.2-1b", "hardware": {"gpu": "a100-40gb", "gpus_per_node": 4, "nodes": 2},
                "knobs": {**FSDP_FP8["knobs"], "precision": "bf16", "offload": "full"}}


@pytest.mark.parametrize("goal", ["fsdp-fp8", "fsdp-offload", "zero3-offload"])
def test_accelerate_launch_loads_the_accelerate_config(tmp_goal, tmp_path, judge, goal):
    goal = {"fsdp-fp8": FSDP_FP8, "fsdp-offload": FSDP_OFFLOAD}.get(goal) or \
        {**FULL, "knobs": {**FULL["knobs"], "zero_stage": 3, "offload": "full", "micro_batch": 4}}
    config, folder = emitted(tmp_goal, tmp_path, goal, "accelerate")
    seen = judge("accelerate_config.py", folder / "accelerate.yaml")
    assert seen["num_processes"] == config["gpus"] and seen["num_machines"] == config["nodes"]
    if goal.get("framework") == "fsdp":
        assert seen["distributed_type"] == "FSDP" and seen["mixed_precision"] == config["precision"]
        assert seen["fsdp"]["version"] == 2
        assert seen["fsdp"]["reshard_after_forward"] == (config["zero_stage"] == 3)
        assert seen["fsdp"]["offload_params"] == (config["offload"] == "full")
    else:
        assert seen["distributed_type"] == "DEEPSPEED" and seen["deepspeed"]["zero_stage"] == 3
    if config["precision"] == "fp8":
        assert seen["fp8_backend"] == "TE" and seen["fp8_format"] == "HYBRID"
    trainer = judge("hf_trainer.py", folder / "sft_config.yaml")
    assert (trainer["micro_batch"], trainer["grad_accum"]) == (config["micro_batch"], config["grad_accum"])


def test_axolotl_hands_accelerate_the_processes_of_every_node(tmp_goal, tmp_path):
    """`axolotl train CONFIG ...` passes the options after its config to `accelerate launch`, whose
    --num_processes counts the processes of all machines (4 x 2 nodes: 8, not 4)."""
    goal = {**FULL, "hardware": {"gpu": "a100-40gb", "gpus_per_node": 4, "nodes": 2},
            "knobs": {**FULL["knobs"], "gpus": 8}}
    config, folder = emitted(tmp_goal, tmp_path, goal, "axolotl")
    line = (folder / "launch.sh").read_text().strip().splitlines()[-1]
    words = shlex.split(line.replace("$NODE_RANK", "1").replace("$MASTER_ADDR", "10.0.0.1").replace("$HERE", "."))
    launch = launch_command_parser().parse_args([*words[words.index("train") + 2:], "train.py"])
    assert (launch.num_processes, launch.num_machines, launch.machine_rank) == (config["gpus"], config["nodes"], 1)
    assert config["nodes"] == 2


@pytest.mark.parametrize("goal", ["qlora", "fsdp"])
def test_axolotl_schema_accepts_the_axolotl_config(tmp_goal, tmp_path, judge, goal):
    goal = QLORA if goal == "qlora" else {**FULL, "framework": "fsdp", "knobs": {**FULL["knobs"], "offload": "none"}}
    config, folder = emitted(tmp_goal, tmp_path, goal, "axolotl")
    seen = judge("axolotl_config.py", folder / "axolotl.yaml", packages="axolotl")
    assert (seen["micro_batch_size"], seen["gradient_accumulation_steps"], seen["sequence_len"]) == \
        (config["micro_batch"], config["grad_accum"], config["context"])
    assert seen["adapter"] == ("qlora" if config["quantization"] == "nf4" else "lora" if config["lora_rank"] else None)
    if goal is QLORA:
        assert seen["lora_target_modules"] == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
        assert seen["optimizer"] == "paged_adamw_8bit" and seen["load_in_4bit"] is True
    else:
        assert str(seen["fsdp_version"]) == "2" and not seen["deepspeed"]


@pytest.mark.parametrize("recipe, all_gather", [("tensorwise", False), ("tensorwise", True), ("rowwise", False)])
def test_torchtitan_loads_the_job_config_of_a_pipelined_fp8_plan(tmp_goal, tmp_path, judge, recipe, all_gather):
    config, folder = emitted(tmp_goal, tmp_path, {**PIPELINED, "fp8_recipe": recipe, "fp8_all_gather": all_gather},
                             "torchtitan")
    seen = judge("torchtitan_config.py", folder / "job.toml", packages="torchtitan")
    assert seen["model"] == ["llama3", "8B"] and "quantize.linear.float8" in seen["converters"]
    assert seen["float8_recipe"] == recipe and seen["float8_all_gather"] is all_gather
    assert seen["float8_precomputed_scale"] is all_gather
    assert seen["degrees"] == [1, config["dp"], 2, 1, 2]
    assert seen["schedule"] == "Interleaved1F1B" and seen["microbatch"] == config["micro_batch"]
    assert seen["global_batch_size"] == config["micro_batch"] * config["grad_accum"] * config["dp"]
    assert seen["local_batch_size"] == config["micro_batch"] * config["grad_accum"]  # the pipeline's micro-batches
    assert (seen["seq_len"], seen["checkpointing"], seen["reshard"], seen["compile"]) == (8192, "selective", "never", True)
    launch = (folder / "launch.sh").read_text()
    assert "--nnodes 2" in launch and '"$MASTER_ADDR:29500"' in launch and '"$HERE/job.toml"' in launch


def test_deepspeed_parses_the_standalone_json_and_it_equals_the_plan(tmp_goal, tmp_path, monkeypatch):
    config, folder = emitted(tmp_goal, tmp_path, FULL, "deepspeed")
    monkeypatch.setattr(deepspeed.comm, "get_rank", lambda *args, **kwargs: 0)

    class DataParallel:
        def get_data_parallel_world_size(self):
            return config["dp"]

    parsed = DeepSpeedConfig(json.loads((folder / "ds_config.json").read_text()), mpu=DataParallel())
    assert parsed.train_batch_size == config["micro_batch"] * config["grad_accum"] * config["dp"]
    assert (parsed.train_micro_batch_size_per_gpu, parsed.gradient_accumulation_steps, parsed.zero_optimization_stage) \
        == (config["micro_batch"], config["grad_accum"], config["zero_stage"])
    assert parsed.bfloat16_config.enabled
    offloaded = parsed.zero_config.offload_optimizer is not None and \
        str(parsed.zero_config.offload_optimizer.device).endswith("cpu")
    assert offloaded == (config["offload"] != "none")


def test_a_target_keeps_the_search_to_what_its_engine_runs(tmp_goal, tmp_path):
    """fp8 and tensor parallelism are searched, but a Trainer with DeepSpeed runs neither: the plan
    written is the best it can run, and the answer says what was narrowed."""
    goal = {**FSDP_FP8, "framework": "deepspeed", "knobs": {"precision": ["fp8", "bf16"], "tp": [1, 2], "context": 4096}}
    code, plan = run_json("solve", tmp_goal(goal), "--emit", "hf", "-o", tmp_path / "out", "--no-explain")
    assert code == 0 and plan["config"]["precision"] == "bf16" and plan["config"]["tp"] == 1
    assert "precision bf16" in plan["emitted"]["restricted"] and "tp 1" in plan["emitted"]["restricted"]
    refused = run_cli("solve", tmp_goal({**goal, "knobs": {"precision": "fp8"}}), "--emit", "hf", "-o", tmp_path / "o2")
    assert refused.returncode == 2 and "knobs.precision" in refused.stderr and "fp8" in refused.stderr
    wrong_framework = run_cli("solve", tmp_goal(FSDP_FP8), "--deepspeed", tmp_path / "ds.json")
    assert wrong_framework.returncode == 2 and "framework deepspeed" in wrong_framework.stderr


def test_several_nodes_get_a_hostfile_and_quoted_paths(tmp_goal, tmp_path):
    goal = {**FULL, "hardware": {"gpu": "a100-40gb", "gpus_per_node": 4, "nodes": 2},
            "knobs": {**FULL["knobs"], "gpus": 8}}
    config, folder = emitted(tmp_goal, tmp_path, goal, "deepspeed")
    assert config["nodes"] == 2
    assert (folder / "hostfile").read_text().count("slots=4") == 2
    launch = (folder / "launch.sh").read_text()
    assert '--hostfile "$HERE/hostfile" --num_nodes 2 --num_gpus 4' in launch
    assert '--deepspeed --deepspeed_config "$HERE/ds_config.json"' in launch


def test_launch_line_uses_the_deepspeed_launcher_for_zero(tmp_goal):
    """The script gets DeepSpeed's own arguments, as deepspeed.add_config_arguments parses them."""
    result = run_cli("solve", tmp_goal(FULL), "--launch")
    assert result.returncode == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("deepspeed "))
    words = shlex.split(line)
    assert words[:3] == ["deepspeed", "--num_gpus", "4"] and words[3] == "${TRAIN_SCRIPT:-train.py}"
    parsed = deepspeed.add_config_arguments(argparse.ArgumentParser()).parse_args(words[4:])
    assert parsed.deepspeed is True and parsed.deepspeed_config == "ds_config.json"


def test_json_alone_on_stdout_when_files_are_written(tmp_goal, tmp_path):
    result = run_cli("solve", tmp_goal(FULL), "--emit", "hf,deepspeed", "-o", tmp_path / "out", "--json", "--launch")
    assert result.returncode == 0
    answer = json.loads(result.stdout)  # nothing else on stdout
    assert len(answer["emitted"]["files"]) >= 6 and "wrote" in result.stderr and "deepspeed " in result.stderr


def test_trainer_arguments_alone_run_no_zero_and_repairs_keep_to_what_the_engine_runs(tmp_goal, tmp_path):
    """Without a DeepSpeed JSON the Trainer runs no ZeRO: a full 8B fine-tune does not fit, and the
    repairs offered are ones the Trainer can run (LoRA, other GPUs), not tensor or pipeline parallelism."""
    goal = {"model": "llama-3.1-8b", "data": {"tokens": 2e9}, "hardware": {"gpu": "a100-80gb", "gpus_per_node": 8},
            "knobs": {"lora_rank": 0, "context": 2048}}
    code, answer = run_json("solve", tmp_goal(goal), "--hf-args", tmp_path / "args.yaml")
    assert code == 1 and answer["status"] == "infeasible"
    assert "zero_stage 0" in answer["emitted"]["restricted"]
    changes = " ".join(repair["change"] for repair in answer["repairs"])
    assert "allow lora_rank" in changes and "allow tp" not in changes and "allow pp" not in changes
    assert not (tmp_path / "args.yaml").exists()
