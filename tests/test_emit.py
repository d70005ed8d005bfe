"""Emitted configs: DeepSpeed's own parser accepts them and their values equal the plan's."""

from __future__ import annotations

import json

import deepspeed.comm
import pytest
from deepspeed.runtime.config import DeepSpeedConfig

from conftest import EXAMPLES, run_cli, run_json

MULTI_GPU = {"model": "llama-3.2-1b", "task": "finetune", "data": {"tokens": 5e8},
             "hardware": {"gpu": "a100-40gb", "gpus_per_node": 4},
             "knobs": {"precision": "bf16", "context": 2048, "lora_rank": 0, "zero_stage": [2, 3],
                       "offload": ["none", "optimizer"], "gpus": 4, "tp": 1, "pp": 1,
                       "grad_checkpointing": True, "micro_batch": [1, 2, 4], "grad_accum": [1, 4]}}


class DataParallel:
    """The mpu DeepSpeedConfig asks for the data-parallel world size."""

    def __init__(self, size):
        self.size = size

    def get_data_parallel_world_size(self):
        return self.size


def solve_and_emit(tmp_path, goal_path):
    ds_path, hf_path = tmp_path / "ds_config.json", tmp_path / "hf_args.json"
    code, plan = run_json("solve", goal_path, "--deepspeed", ds_path, "--hf-args", hf_path)
    assert code == 0, plan
    return plan, json.loads(ds_path.read_text()), json.loads(hf_path.read_text())


@pytest.mark.parametrize("goal", ["quickstart", "multi-gpu"])
def test_deepspeed_accepts_the_emitted_config_and_it_equals_the_plan(tmp_path, tmp_goal, monkeypatch, goal):
    path = EXAMPLES / "quickstart.yaml" if goal == "quickstart" else tmp_goal(MULTI_GPU)
    plan, ds, hf = solve_and_emit(tmp_path, path)
    config = plan["config"]
    monkeypatch.setattr(deepspeed.comm, "get_rank", lambda *args, **kwargs: 0)
    parsed = DeepSpeedConfig(ds, mpu=DataParallel(config["dp"]))
    assert parsed.train_batch_size == config["micro_batch"] * config["grad_accum"] * config["dp"]
    assert parsed.train_micro_batch_size_per_gpu == config["micro_batch"]
    assert parsed.gradient_accumulation_steps == config["grad_accum"]
    assert parsed.zero_optimization_stage == config["zero_stage"]
    assert parsed.bfloat16_config.enabled == (config["precision"] in ("bf16", "fp8"))
    assert parsed.float16_config.enabled == (config["precision"] == "fp16")
    offloaded = parsed.zero_config.offload_optimizer is not None and \
        str(parsed.zero_config.offload_optimizer.device).endswith("cpu")
    assert offloaded == (config["offload"] != "none")
    assert parsed.gradient_clipping > 0
    assert hf["per_device_train_batch_size"] == config["micro_batch"]
    assert hf["gradient_accumulation_steps"] == config["grad_accum"]
    assert hf["gradient_checkpointing"] == (config["grad_checkpointing"] is not False)


def test_check_reads_the_emitted_deepspeed_json_back(tmp_path, tmp_goal):
    goal = tmp_goal(MULTI_GPU)
    plan, ds, _ = solve_and_emit(tmp_path, goal)
    code, (checked,) = run_json("check", tmp_path / "ds_config.json", "--goal", goal)
    assert code == 0 and checked["status"] == "pass"
    for knob in ("micro_batch", "grad_accum", "zero_stage", "offload", "precision", "dp"):
        assert checked["config"][knob] == plan["config"][knob]


def test_deepspeed_json_that_does_not_fit_fails_with_the_numbers(tmp_path, tmp_goal):
    goal = tmp_goal({**MULTI_GPU, "model": "llama-3.1-8b"})
    ds = {"train_batch_size": 16, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 1,
          "bf16": {"enabled": True}, "zero_optimization": {"stage": 1}}
    (tmp_path / "ds_config.json").write_text(json.dumps(ds))
    result = run_cli("check", tmp_path / "ds_config.json", "--goal", goal)
    assert result.returncode == 1
    assert "memory/fits-gpu-memory" in result.stdout and "GiB per GPU" in result.stdout


def test_inconsistent_deepspeed_batch_is_bad_input(tmp_path, tmp_goal):
    ds = {"train_batch_size": 10, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 1}
    (tmp_path / "ds_config.json").write_text(json.dumps(ds))
    result = run_cli("check", tmp_path / "ds_config.json", "--goal", tmp_goal(MULTI_GPU))
    assert result.returncode == 2 and "train_batch_size" in result.stderr


def test_deepspeed_json_without_goal_says_what_is_missing(tmp_path):
    (tmp_path / "ds_config.json").write_text("{}")
    result = run_cli("check", tmp_path / "ds_config.json")
    assert result.returncode == 2 and "--goal" in result.stderr


def test_launch_line_uses_the_deepspeed_launcher_for_zero(tmp_goal):
    result = run_cli("solve", tmp_goal(MULTI_GPU), "--launch")
    assert result.returncode == 0
    assert "deepspeed --num_gpus 4 train.py --deepspeed ds_config.json" in result.stdout
