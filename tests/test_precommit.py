"""The pre-commit hook, run by the real `pre-commit try-repo` in a team's git repository holding a
tplan config, an axolotl config, a Hugging Face-style "auto" DeepSpeed JSON with the
TrainingArguments that name it (each engine file with its NAME.tplan.yaml: hardware and data), and
the folder `tplan solve --emit accelerate` wrote (each of its files checked as the one run)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

GOOD = {"model": "gpt2", "task": "pretrain", "data": {"tokens": 1e8}, "hardware": {"gpu": "a100-80gb"},
        "knobs": {"precision": "bf16", "micro_batch": 8, "context": 1024}}
BAD = {**GOOD, "model": "llama-2-7b", "task": "finetune",
       "knobs": {"precision": "bf16", "micro_batch": 8, "context": 1024, "zero_stage": 0, "lora_rank": 0}}
# Hugging Face's usual ZeRO-2 file: the Trainer fills every "auto" from its arguments
HF_DS_CONFIG = {"fp16": {"enabled": "auto"}, "bf16": {"enabled": "auto"},
                "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto",
                                                          "weight_decay": "auto"}},
                "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": "auto", "warmup_max_lr": "auto",
                                                             "warmup_num_steps": "auto"}},
                "zero_optimization": {"stage": 2, "allgather_partitions": True, "allgather_bucket_size": 2e8,
                                      "overlap_comm": True, "reduce_scatter": True, "reduce_bucket_size": "auto",
                                      "contiguous_gradients": True},
                "gradient_accumulation_steps": "auto", "gradient_clipping": "auto", "steps_per_print": 2000,
                "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "wall_clock_breakdown": False}
TRAINING_ARGUMENTS = {"output_dir": "out", "per_device_train_batch_size": 4, "gradient_accumulation_steps": 4,
                      "learning_rate": 2e-5, "num_train_epochs": 1, "bf16": True, "gradient_checkpointing": True,
                      "logging_steps": 10, "save_strategy": "no", "report_to": "none", "deepspeed": "ds_config.json"}
AXOLOTL = {"base_model": "meta-llama/Llama-3.1-8B-Instruct", "load_in_4bit": True, "adapter": "qlora",
           "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "sequence_len": 2048, "sample_packing": True,
           "micro_batch_size": 2, "gradient_accumulation_steps": 4, "num_epochs": 1, "learning_rate": 2e-4,
           "optimizer": "paged_adamw_8bit", "bf16": "auto", "gradient_checkpointing": True,
           "datasets": [{"path": "tatsu-lab/alpaca", "type": "alpaca"}], "output_dir": "./outputs"}
SIDE = {"task": "finetune", "data": {"tokens": 1e8}}


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)


def team_repository(folder: Path) -> Path:
    repo = folder / "team"
    (repo / "sft").mkdir(parents=True)
    (repo / "qlora").mkdir()
    git(repo, "init", "-q")
    (repo / "good.tplan.yaml").write_text(yaml.safe_dump(GOOD))
    (repo / "goal.yaml").write_text(yaml.safe_dump({**GOOD, "knobs": {"micro_batch": [1, 2, 4]}}))
    (repo / "sft" / "ds_config.json").write_text(json.dumps(HF_DS_CONFIG, indent=2))
    (repo / "sft" / "training_args.json").write_text(json.dumps(TRAINING_ARGUMENTS, indent=2))
    (repo / "sft" / "training_args.tplan.yaml").write_text(yaml.safe_dump(
        {"model": "qwen2.5-1.5b", **SIDE, "hardware": {"gpu": "a100-80gb", "gpus_per_node": 4}}))
    (repo / "qlora" / "axolotl.yaml").write_text(yaml.safe_dump(AXOLOTL, sort_keys=False))
    (repo / "qlora" / "axolotl.tplan.yaml").write_text(yaml.safe_dump(
        {"model": "llama-3.1-8b", **SIDE, "hardware": {"gpu": "a100-40gb"}}))
    # a run `tplan solve --emit accelerate` wrote: accelerate config, Trainer arguments, DeepSpeed JSON
    goal = folder / "accelerate-goal.yaml"
    goal.write_text(yaml.safe_dump({"model": "qwen2.5-1.5b", **SIDE, "hardware": {"gpu": "a100-80gb", "gpus_per_node": 4},
                                    "knobs": {"lora_rank": 0, "zero_stage": 2, "offload": "optimizer"}}))
    (repo / "acc").mkdir()
    subprocess.run([sys.executable, "-m", "tplan", "solve", str(goal), "--emit", "accelerate", "-o", str(repo / "acc")],
                   capture_output=True, check=True)
    git(repo, "add", ".")
    return repo


@pytest.mark.parametrize("document", ["README.md", "docs/precommit.md"])
def test_the_documented_rev_is_a_tag_of_this_repository(document):
    rev = re.search(r"rev: (\S+)", (ROOT / document).read_text()).group(1)
    assert rev == f"v{__import__('tplan').__version__}"
    tags = subprocess.run(["git", "tag", "--list"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    # A clone of the main branch alone (as CI makes) carries no tags; where the tags came
    # along, the pinned one must be among them.
    assert not tags or rev in tags, f"{document} pins rev {rev}, which is not a tag here"


def test_engine_configs_of_a_team_are_checked_directly(tmp_path):
    repo = team_repository(tmp_path)
    for path in ("sft/ds_config.json", "sft/training_args.json", "qlora/axolotl.yaml"):
        result = subprocess.run([sys.executable, "-m", "tplan", "check", path, "--json"], cwd=repo,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        (checked,) = json.loads(result.stdout)
        config = checked["config"]
        if path.startswith("sft"):
            assert (config["micro_batch"], config["grad_accum"], config["zero_stage"], config["precision"],
                    config["grad_checkpointing"], config["gpus"]) == (4, 4, 2, "bf16", True, 4)
        else:
            assert (config["lora_rank"], config["quantization"], config["optimizer"], config["context"]) == \
                (16, "nf4", "paged-adamw-8bit", 2048)


def test_pre_commit_try_repo_passes_a_team_repository_and_blocks_a_bad_config(tmp_path):
    repo = team_repository(tmp_path)
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pre_commit = [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), "tplan-check"]

    good = subprocess.run([*pre_commit, "--all-files", "--verbose"], cwd=repo, capture_output=True, text=True,
                          env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    for checked in ("good.tplan.yaml: pass", "sft/ds_config.json: pass", "sft/training_args.json: pass",
                    "qlora/axolotl.yaml: pass", "acc/accelerate/accelerate.yaml: pass",
                    "acc/accelerate/sft_config.yaml: pass", "acc/accelerate/ds_config.json: pass"):
        assert checked in good.stdout, good.stdout

    (repo / "bad.tplan.yaml").write_text(yaml.safe_dump(BAD))
    git(repo, "add", ".")
    bad = subprocess.run([*pre_commit, "--all-files"], cwd=repo, capture_output=True, text=True, env=env)
    assert bad.returncode != 0
    assert "bad.tplan.yaml: memory/fits-gpu-memory: needs" in bad.stdout
    assert "goal.yaml" not in bad.stdout  # a goal (knob lists) is not a config


def test_the_documented_local_hook_runs_verbatim(tmp_path):
    """docs/precommit.md's `repo: local` snippet, copied as it is into a team's repository, runs the
    installed tplan through `pre-commit run`."""
    snippet = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "precommit.md").read_text(), re.S)[-1]
    assert "repo: local" in snippet
    repo = team_repository(tmp_path)
    (repo / ".pre-commit-config.yaml").write_text(snippet)
    git(repo, "add", ".")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run([sys.executable, "-m", "pre_commit", "run", "--all-files", "--verbose"], cwd=repo,
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "qlora/axolotl.yaml: pass" in run.stdout and "sft/ds_config.json: pass" in run.stdout
