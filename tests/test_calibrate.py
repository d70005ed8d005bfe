"""tplan calibrate: the fit finds constants that reproduce measurements, and its pack is a rule pack goals use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tplan import calibrate
from tplan.goal import load_problem

ROOT = Path(__file__).resolve().parent.parent
MEASURED = ROOT / "data" / "measured"
TRUE = {"matmul_efficiency": 0.7, "matmul_half_width": 900.0, "collective_hop_seconds": 5e-6}


def tplan(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tplan", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """A measurement file whose speeds are tplan's own predictions under TRUE constants: a fit must
    reproduce them (the search, not the physics, is under test here)."""
    sources = [MEASURED / "torchtune.yaml", MEASURED / "llm-foundry.yaml", MEASURED / "megatron.yaml"]
    runs = [run for path in sources for run in yaml.safe_load(path.read_text())["runs"]][::6]
    folder = tmp_path_factory.mktemp("synthetic")
    path = folder / "runs.yaml"
    path.write_text(yaml.safe_dump({"source": "synthetic", "runs": runs}))
    predicted = {run.id: calibrate.predict(run, TRUE) for run in calibrate.read_runs([path])}
    for run in runs:
        run["measured"] = {"tokens_per_second": predicted[run["id"]]}
    path.write_text(yaml.safe_dump({"source": "tplan's own predictions under known constants", "runs": runs}))
    return path


def test_fit_reproduces_measurements_made_with_known_constants(synthetic):
    runs = calibrate.read_runs([synthetic])
    assert len(runs) > 30 and len({run.config["gpus"] for run in runs}) > 5
    before = calibrate.summary(runs, {})           # the shipped constants are not TRUE
    fitted = calibrate.fit(runs)
    after = calibrate.summary(runs, fitted)
    assert before["median"] > 0.05
    assert after["median"] < 0.01 and after["worst"] < 0.05, (fitted, after)


def test_calibration_pack_is_a_rule_pack_a_goal_uses(synthetic, tmp_path):
    pack = tmp_path / "calibration.yaml"
    result = tplan("calibrate", synthetic, "-o", pack)
    assert result.returncode == 0, result.stderr
    assert "median |error|" in result.stdout
    constants = {name: spec["value"] for name, spec in yaml.safe_load(pack.read_text())["params"].items()}
    assert set(constants) == set(calibrate.FITTED)
    goal = tmp_path / "goal.yaml"
    goal.write_text("model: llama-3.2-1b\ndata: {tokens: 1e9}\nhardware: {gpu: a100-80gb}\n"
                    "knobs: {micro_batch: 4, context: 2048, precision: bf16}\nrules: [calibration.yaml]\n")
    problem = load_problem(goal, pinned=True)
    for name, value in constants.items():
        assert problem.rules.params[name] == value
    solved = tplan("solve", goal, "--json", "--no-explain")
    assert solved.returncode == 0, solved.stderr


def test_json_lists_every_run_error(synthetic):
    result = tplan("calibrate", synthetic, "--json")
    assert result.returncode == 0, result.stderr
    import json
    answer = json.loads(result.stdout)
    assert set(answer["constants"]) == set(calibrate.FITTED)
    assert len(answer["errors"]) == answer["runs"] and answer["median"] < 0.01


def test_every_measured_speed_kind_means_the_same_run(tmp_path):
    """tokens/s of the job, per GPU, a step time and model TFLOP/s per GPU describe one speed four ways."""
    run = yaml.safe_load((MEASURED / "llm-foundry.yaml").read_text())["runs"][0]
    (path := tmp_path / "one.yaml").write_text(yaml.safe_dump({"source": "x", "runs": [run]}))
    [base] = calibrate.read_runs([path])
    values = base.static
    gpus = base.config["gpus"]
    kinds = {"tokens_per_second": base.measured, "tokens_per_second_per_gpu": base.measured / gpus,
             "step_seconds": values["tokens_per_step"] / base.measured,
             "model_tflops_per_gpu": base.measured * values["model_flops_per_token"] / gpus / 1e12}
    runs = [{**run, "id": kind, "measured": {kind: amount}} for kind, amount in kinds.items()]
    path.write_text(yaml.safe_dump({"source": "x", "runs": runs}))
    for parsed in calibrate.read_runs([path]):
        assert parsed.measured == pytest.approx(base.measured, rel=1e-9), parsed.id


@pytest.mark.parametrize("goal, config, rule", [
    ({"framework": "deepspeed", "fp8_recipe": "rowwise"}, {"precision": "fp8", "zero_stage": 3},
     "time/fp8-rowwise-under-fsdp"),
    ({"framework": "fsdp", "overlap_grad_reduce": True}, {"precision": "bf16", "zero_stage": 3},
     "time/overlap-flags-under-megatron"),
    ({"task": "finetune"}, {"precision": "fp8", "quantization": "nf4", "lora_rank": 16},
     "time/fp8-needs-16-bit-weights")])
def test_a_run_whose_settings_cannot_exist_together_is_bad_input(tmp_path, goal, config, rule):
    runs = [{"id": "fine", "goal": {"model": "llama-3.1-8b", "hardware": {"gpu": "h100-sxm", "gpus_per_node": 8}},
             "config": {"precision": "bf16", "micro_batch": 1, "grad_accum": 1, "context": 4096},
             "measured": {"tokens_per_second_per_gpu": 5000}},
            {"id": "impossible", "goal": {"model": "llama-3.1-8b", "hardware": {"gpu": "h100-sxm", "gpus_per_node": 8},
                                          **goal},
             "config": {"micro_batch": 1, "grad_accum": 1, "context": 4096, **config},
             "measured": {"tokens_per_second_per_gpu": 5000}}]
    path = tmp_path / "runs.yaml"
    path.write_text(yaml.safe_dump({"source": "hostile", "runs": runs}, sort_keys=False))
    result = tplan("calibrate", path, "-o", tmp_path / "pack.yaml")
    assert result.returncode == 2, result.stderr
    assert "runs[1]" in result.stderr and rule in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "pack.yaml").exists()
