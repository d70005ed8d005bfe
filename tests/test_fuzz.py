"""Fuzzing with a bounded budget: random goals, rule packs, config.json files and DeepSpeed
JSON, mostly valid with a few hostile values. Whatever the input, the command exits 0, 1 or
2 (never 3 or a traceback); a plan it returns passes `check`; the same input gives the same
bytes twice."""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tplan.cli import run

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HOSTILE_NUMBERS = st.sampled_from([0, -1, 0.5, 1e308, -1e308, math.nan, math.inf, 2**70, True, "", "x", None])
GPUS = st.sampled_from(["a100-80gb", "h100-sxm", "rtx-3090", "a100-40gb", "h100", "tpu-v5"])
MODELS = st.sampled_from(["tinyllama-1.1b", "llama-3.1-8b", "gpt2", "llama-2-7b", "llama-9", "Qwen/Qwen2.5-0.5B"])


def tplan(*args: str) -> tuple[int, str, str]:
    """Run the command line in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run(list(args))
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


@st.composite
def goals(draw) -> dict:
    """A valid goal with at most one value replaced by a hostile one."""
    knobs = {"precision": draw(st.sampled_from(["bf16", "fp16", "fp8", ["bf16", "fp8"]])),
             "micro_batch": draw(st.sampled_from([1, 2, 4, [1, 2, 4, 8], [1, 3, 64]])),
             "context": draw(st.sampled_from([512, 2048, [1024, 4096]])),
             "zero_stage": draw(st.sampled_from([0, 1, 2, 3, [0, 3]])),
             "lora_rank": draw(st.sampled_from([0, 16, [0, 8, 64]])),
             "offload": draw(st.sampled_from(["none", "optimizer", ["none", "full"]])),
             "grad_checkpointing": draw(st.sampled_from([True, False, "selective"])),
             "quantization": "none"}
    goal = {"model": draw(MODELS), "data": {"tokens": draw(st.sampled_from([1e8, 2e9, "500M", "2B"]))},
            "hardware": {"gpu": draw(GPUS), "gpus_per_node": draw(st.sampled_from([1, 2, 8])),
                         "nodes": draw(st.sampled_from([1, 2]))},
            "knobs": {key: value for key, value in knobs.items() if draw(st.booleans())}}
    if draw(st.booleans()):
        goal["deadline"] = draw(st.sampled_from(["48h", "3 days", 36000, "90m"]))
    if draw(st.booleans()):
        goal["objective"] = draw(st.sampled_from(["time", "cost", "memory"]))
    if draw(st.booleans()):
        goal["data"]["global_batch"] = draw(st.sampled_from([8, 32, 64, 96]))
    spoiled = draw(st.sampled_from([None, None, None, ("data", "tokens"), ("hardware", "gpus_per_node"),
                                    ("hardware", "nodes"), ("knobs", "micro_batch"), ("knobs", "context"),
                                    ("knobs", "lora_rank"), ("data", "global_batch"), ("deadline",)]))
    if spoiled:
        parent = goal
        for key in spoiled[:-1]:
            parent = parent[key]
        parent[spoiled[-1]] = draw(HOSTILE_NUMBERS)
    return goal


def _write(folder: Path, name: str, data) -> str:
    path = folder / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def _solve_and_check(folder: Path, goal: dict, *extra: str) -> None:
    path = _write(folder, "goal.yaml", goal)
    code, out, err = tplan("solve", path, "--json", "--no-explain", "--time-limit", "5", *extra)
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err and (code != 2 or err.startswith("tplan: error: ")), err
    if code == 2:
        return
    assert tplan("solve", path, "--json", "--no-explain", "--time-limit", "5", *extra)[1] == out  # same bytes
    answer = json.loads(out)
    if code == 0:  # the plan, pinned as a config, passes check
        config = answer["config"]  # with dp, gpu and nodes, which a config accepts when they agree
        pinned = _write(folder, "config.yaml", {**goal, "knobs": config})
        assert tplan("check", pinned, *extra)[0] == 0


@FUZZ
@given(goals())
def test_random_goals_exit_0_1_or_2_and_plans_pass_check(goal):
    with tempfile.TemporaryDirectory() as folder:
        _solve_and_check(Path(folder), goal)


NAMES = st.sampled_from(["micro_batch", "context", "memory_per_gpu", "train_seconds", "lora_rank", "gpus",
                         "model.hidden", "tokens_per_second", "zero_stage", "nothing_here", "__class__"])
CONSTANTS = st.sampled_from(["0", "1", "-1", "0.5", "1e30", "1e-30", "2**10", "10**10**10", "'bf16'", "true"])


@st.composite
def expressions(draw, depth: int = 3) -> str:
    if depth == 0 or draw(st.booleans()):
        return draw(st.one_of(NAMES, CONSTANTS))
    left, right = draw(expressions(depth - 1)), draw(expressions(depth - 1))
    form = draw(st.sampled_from(["{} + {}", "{} * {}", "{} / {}", "{} - {}", "{} ** {}", "{} % {}", "min({}, {})",
                                 "{} <= {}", "{} == {}", "{} != {}", "not {} or {}", "{} if {} else 0",
                                 "{} and {}", "({})[{}]", "{}.{}", "{}({})"]))
    return form.format(left, right)


@FUZZ
@given(st.lists(expressions(), min_size=1, max_size=3), st.sampled_from(["", ":bytes", ":int", ":g", ":pct", ":time", ":>99999"]))
def test_random_team_packs_exit_0_1_or_2(conditions, style):
    pack = {"pack": "team", "constraints": [{"id": f"rule-{index}", "expr": condition,
                                             "message": f"value {{micro_batch{style}}}"}
                                            for index, condition in enumerate(conditions)]}
    goal = {"model": "tinyllama-1.1b", "data": {"tokens": 1e8}, "hardware": {"gpu": "a100-80gb"},
            "knobs": {"precision": "bf16", "micro_batch": [1, 4], "context": 1024, "zero_stage": 0,
                      "lora_rank": [0, 16], "offload": "none", "quantization": "none"}}
    with tempfile.TemporaryDirectory() as folder:
        _solve_and_check(Path(folder), goal, "--rules", _write(Path(folder), "team.yaml", pack))


HF_CONFIG = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
             "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000,
             "max_position_embeddings": 2048, "tie_word_embeddings": False}


@FUZZ
@given(st.dictionaries(st.sampled_from([*HF_CONFIG, "head_dim", "num_local_experts", "num_experts_per_tok"]),
                       st.one_of(HOSTILE_NUMBERS, st.integers(-4, 70000), st.sampled_from(["mixtral", "gpt2", "mamba"])),
                       max_size=3))
def test_random_config_json_exit_0_1_or_2(changes):
    goal = {"model": {"hf_config": "config.json"}, "data": {"tokens": 1e8}, "hardware": {"gpu": "a100-80gb"},
            "knobs": {"precision": "bf16", "micro_batch": 1, "context": 1024, "zero_stage": 0, "lora_rank": 16,
                      "offload": "none", "quantization": "none", "grad_checkpointing": True}}
    with tempfile.TemporaryDirectory() as folder:
        _write(Path(folder), "config.json", {**HF_CONFIG, **changes})
        _solve_and_check(Path(folder), goal)


DEEPSPEED = {"train_batch_size": 64, "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 8,
             "bf16": {"enabled": True}, "zero_optimization": {"stage": 2}}
SIDE_GOAL = {"model": "tinyllama-1.1b", "data": {"tokens": 1e8}, "hardware": {"gpu": "a100-80gb", "gpus_per_node": 8},
             "knobs": {"lora_rank": 0, "context": 1024, "offload": "none", "quantization": "none", "tp": 1, "pp": 1}}
DS_VALUES = st.one_of(HOSTILE_NUMBERS, st.integers(-2, 300), st.sampled_from(["auto", "cpu", "nvme", "floppy"]),
                      st.fixed_dictionaries({}, optional={"stage": st.integers(-1, 5), "enabled": st.booleans(),
                                                          "offload_optimizer": st.just({"device": "cpu"})}))


@FUZZ
@given(st.dictionaries(st.sampled_from([*DEEPSPEED, "optimizer", "fp16"]), DS_VALUES, max_size=3))
def test_random_deepspeed_json_exit_0_1_or_2(changes):
    with tempfile.TemporaryDirectory() as folder:
        config = _write(Path(folder), "ds.json", {**DEEPSPEED, **changes})
        side = _write(Path(folder), "side.yaml", SIDE_GOAL)
        code, out, err = tplan("check", config, "--goal", side, "--json")
        assert code in (0, 1, 2) and "Traceback" not in err, (code, err)
        assert tplan("check", config, "--goal", side, "--json") == (code, out, err)


ENGINE_GOALS = {  # one plan per engine, whose files are then mutated
    "hf": {**SIDE_GOAL, "knobs": {**SIDE_GOAL["knobs"], "lora_rank": 16, "quantization": "nf4", "zero_stage": 0,
                                   "precision": "bf16"}},
    "accelerate": {**SIDE_GOAL, "framework": "fsdp", "knobs": {**SIDE_GOAL["knobs"], "zero_stage": 3, "precision": "bf16"}},
    "axolotl": {**SIDE_GOAL, "knobs": {**SIDE_GOAL["knobs"], "zero_stage": 2, "precision": "bf16"}},
    "torchtitan": {**SIDE_GOAL, "model": "qwen3-0.6b", "task": "pretrain", "framework": "fsdp",
                   "hardware": {"gpu": "h100-sxm", "gpus_per_node": 8},
                   "knobs": {**SIDE_GOAL["knobs"], "precision": "fp8", "tp": 2, "pp": 2, "zero_stage": 2}},
}
MAIN_FILES = {"hf": "sft_config.yaml", "accelerate": "accelerate.yaml", "axolotl": "axolotl.yaml",
              "torchtitan": "job.toml"}
_EMITTED: dict = {}


def _emitted(target: str) -> dict:
    """{file name: parsed content} of the files `solve --emit TARGET` writes for its goal (once)."""
    if target not in _EMITTED:
        import tomllib

        with tempfile.TemporaryDirectory() as folder:
            goal = _write(Path(folder), "goal.yaml", ENGINE_GOALS[target])
            code, out, err = tplan("solve", str(goal), "--emit", target, "-o", folder, "--no-explain")
            assert code == 0, err
            place = Path(folder) / target
            _EMITTED[target] = {path.name: (tomllib.loads(path.read_text()) if path.suffix == ".toml" else
                                            yaml.safe_load(path.read_text()))
                                for path in place.iterdir() if path.suffix in (".yaml", ".json", ".toml")}
    return _EMITTED[target]


def _toml(data: dict) -> str:
    from tplan.emit.torchtitan import toml
    return toml(data)


@FUZZ
@given(st.sampled_from(sorted(MAIN_FILES)), st.data())
def test_engine_files_with_hostile_values_exit_0_1_or_2(target, data):
    files = {name: json.loads(json.dumps(content)) for name, content in _emitted(target).items()}
    main = files[MAIN_FILES[target]]
    section = main
    key = data.draw(st.sampled_from(sorted(section)))
    if isinstance(section[key], dict) and section[key] and data.draw(st.booleans()):
        section, key = section[key], data.draw(st.sampled_from(sorted(section[key])))
    if data.draw(st.booleans()):
        section[key] = data.draw(st.one_of(HOSTILE_NUMBERS, st.sampled_from(["auto", [], {}, [1, "x"], "fp4"])))
    else:
        del section[key]
    with tempfile.TemporaryDirectory() as folder:
        for name, content in files.items():
            path = Path(folder) / name
            if name.endswith(".toml"):
                try:
                    path.write_text(_toml(content))
                except (TypeError, ValueError):
                    return  # a value TOML cannot hold (None): no such file exists
            else:
                path.write_text(json.dumps(content, allow_nan=True) if name.endswith(".json") else yaml.safe_dump(content))
        code, out, err = tplan("check", str(Path(folder) / MAIN_FILES[target]), "--json")
        assert code in (0, 1, 2) and "Traceback" not in err, (code, err)
