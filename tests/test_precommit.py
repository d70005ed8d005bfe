"""The pre-commit hook blocks a bad config in a real git repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT

GOOD = {"model": "gpt2", "task": "pretrain", "data": {"tokens": 1e8}, "hardware": {"gpu": "a100-80gb"},
        "knobs": {"precision": "bf16", "micro_batch": 8, "context": 1024}}
BAD = {**GOOD, "model": "llama-2-7b", "task": "finetune",
       "knobs": {"precision": "bf16", "micro_batch": 8, "context": 1024, "zero_stage": 0, "lora_rank": 0}}


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)


def test_pre_commit_try_repo_passes_good_and_blocks_bad_config(tmp_path):
    repo = tmp_path / "team"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "good.tplan.yaml").write_text(yaml.safe_dump(GOOD))
    (repo / "bad.tplan.yaml").write_text(yaml.safe_dump(BAD))
    git(repo, "add", ".")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pre_commit = [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), "tplan-check", "--files"]

    good = subprocess.run([*pre_commit, "good.tplan.yaml"], cwd=repo, capture_output=True, text=True, env=env)
    assert good.returncode == 0, good.stdout + good.stderr

    bad = subprocess.run([*pre_commit, "bad.tplan.yaml"], cwd=repo, capture_output=True, text=True, env=env)
    assert bad.returncode != 0
    assert "bad.tplan.yaml: memory/fits-gpu-memory: needs" in bad.stdout

    # A DeepSpeed JSON and its side file (model, data and hardware) committed together: the side file
    # stands for the JSON, never for a goal with default knobs.
    goal = repo / "ds_config.tplan.yaml"
    goal.write_text(yaml.safe_dump({key: value for key, value in GOOD.items() if key != "knobs"}))
    solved = subprocess.run([sys.executable, "-m", "tplan", "solve", str(goal), "--deepspeed", "ds_config.json",
                             "--no-explain"], cwd=repo, capture_output=True, text=True)
    assert solved.returncode == 0, solved.stderr
    git(repo, "add", ".")
    pair = subprocess.run([*pre_commit, "ds_config.json", "ds_config.tplan.yaml"], cwd=repo, capture_output=True,
                          text=True, env=env)
    assert pair.returncode == 0, pair.stdout + pair.stderr
