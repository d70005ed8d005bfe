"""Every shipped example solves through the installed CLI as its comment header says, the seed
examples quote their seed, and docs/scenarios.md (scripts/scenarios.py) is current.

The CLI runs (one `python -m tplan solve FILE --json` per example) happen once per session, two at
a time, in the `answers` fixture; the tests then read them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import scenarios  # noqa: E402

FILES = sorted(EXAMPLES.glob("*.yaml"))
SEED_FILES = [path for path in FILES if path.name.startswith("seed")]
KNOBS = {"precision", "optimizer", "micro_batch", "grad_accum", "context", "zero_stage", "offload",
         "grad_checkpointing", "lora_rank", "quantization", "gpus", "dp", "tp", "pp", "cp", "vp", "gpu", "nodes"}


def _solve(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tplan", "solve", str(path), "--json"], capture_output=True,
                          text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.fixture(scope="module")
def answers() -> dict:
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        return dict(zip(FILES, pool.map(_solve, FILES)))


def test_there_are_examples_for_every_seed():
    assert {path.name[:7] for path in SEED_FILES} == {f"seed{n:03d}" for n in range(5)}
    assert any(scenarios.header(path)["expect"] == "infeasible" for path in SEED_FILES)


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_example_solves_as_its_header_says(path, answers):
    result = answers[path]
    assert "Traceback" not in result.stderr, result.stderr
    answer = json.loads(result.stdout)
    head = scenarios.header(path)
    if head["expect"] == "infeasible":
        assert result.returncode == 1, result.stderr
        assert answer["status"] == "infeasible"
        assert answer["conflict"], "an infeasible answer names the rules that rule every plan out"
        assert answer["config"] is None
        repairs = answer["repairs"]  # each re-solved: a change and the plan it then gets
        assert any(repair["passes"] for repair in repairs), "an infeasible example offers a repair that fits"
        assert all(repair["change"] and repair["config"] and repair["estimate"] for repair in repairs)
        return
    assert head["expect"] == "optimal", f"{path.name}: expect is optimal or infeasible"
    assert result.returncode == 0, answer.get("conflict")
    assert answer["status"] == "optimal"
    for each in answer.get("stages") or [answer]:   # a staged goal answers each stage as one goal
        check_one_plan(path, head, each)


def check_one_plan(path, head, answer):
    assert set(answer["config"]) == KNOBS
    for knob, value in (head.get("expect-config") or {}).items():
        assert answer["config"][knob] == value, f"{path.name}: {knob} {answer['config'][knob]!r}, header says {value!r}"
    estimate = answer["estimate"]
    assert 0 < estimate["memory_per_gpu_bytes"]
    assert sum(estimate["memory_breakdown_bytes"].values()) == pytest.approx(estimate["memory_per_gpu_bytes"],
                                                                           rel=1e-9)
    assert estimate["train_seconds"] > 0 and 0 < estimate["model_flops_utilization"] < 1
    assert not [v for v in answer["violations"] if v["severity"] == "error"]


@pytest.mark.parametrize("path", SEED_FILES, ids=[path.stem for path in SEED_FILES])
def test_seed_example_quotes_its_seed(path):
    head = scenarios.header(path)
    assert head["title"].startswith(f"Seed {path.name[4:7]}"), "the comment block opens with the seed it reproduces"
    text = path.read_text(encoding="utf-8")
    assert "seed document" in text and ("Seed row" in text or "Seed text" in text), "the seed's own row or text is quoted"
    assert "seeds/" not in text and "shared/" not in text, "no path outside the repository"
    estimate = head.get("seed-estimate")
    assert isinstance(estimate, dict) and estimate.get("time") and estimate.get("memory")
    hours = estimate.get("hours")
    assert hours is None or (len(hours) == 2 and 0 < hours[0] <= hours[1])
    assert head.get("why") and "TBD" not in head["why"]


# A figure with a unit: a time, a memory size, a share, a cost, a FLOP count.
FIGURE = re.compile(r"(\$\s?\d|(?<![\w.])\d(?:[\d.,]*\d)?(?:e[+-]?\d+)?\s*(?:-\s*\d[\d.,]*\s*)?"
                    r"(?:GiB|MiB|GB|MB|TB|h|hours?|min|minutes|days?|weeks?|months?|years?|%|(?<=\s)s|"
                    r"G?FLOPs?(?:/token)?|TFLOP/s)(?![\w-]))")


def literal_figures(path: Path) -> list[str]:
    """The why-line's figures that are neither placeholders nor quotes of the header's seed text."""
    text = path.read_text(encoding="utf-8")
    head = "\n".join(line for line in text.splitlines() if line.startswith("#") and not line.startswith("# why:"))
    line = scenarios.header(path).get("why", "")
    quotes = re.findall(r'"([^"]*)"', line)
    bad = [f"unquoted seed text {quote!r}" for quote in quotes if FIGURE.search(quote) and quote not in head]
    bare = re.sub(r"\{[\w.-]+\}|100% of", " ", re.sub(r'"[^"]*"', " ", line))   # "at 100% of the peak" is no figure
    return bad + FIGURE.findall(bare)


@pytest.mark.parametrize("path", SEED_FILES, ids=[path.stem for path in SEED_FILES])
def test_why_states_no_figure_as_literal_text(path):
    """tplan's figures come from placeholders and seed figures are quoted from the header, so a why-line
    cannot contradict the row it explains: no bare number with a unit (GiB, h, days, %, $, FLOPs ...)."""
    assert not literal_figures(path), f"{path.name}: {literal_figures(path)}"


def test_the_figure_guard_catches_literals(tmp_path):
    sample = tmp_path / "seed000-x.yaml"
    sample.write_text('# Seed 000\n# Seed row: | 2-4 h | 10 GB |\n'
                      '# why: {time} at {mfu}; the seed\'s "2-4 h" against 76 GiB and 3.1e19 FLOPs, "9 h"\n')
    assert literal_figures(sample) == ["unquoted seed text '9 h'", "76 GiB", "3.1e19 FLOPs"]


def test_scenarios_doc_is_current():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "scenarios.py"), "--check"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_synthetic_share_alone_sets_the_pressure_level(tmp_goal):
    """A goal giving only the synthetic share gets the level its synthetic tokens reach (seed 004's
    table), and a pure-synthetic high-pressure run is warned to mix in real data."""
    from tplan.goal import load_problem

    def level(tokens, share, **knobs):
        goal = {"model": "qwen2.5-0.5b", "task": "finetune", "data": {"tokens": tokens, "synthetic_share": share, "global_batch": 1},
                "hardware": {"gpu": "a100-80gb"},
                "knobs": {"precision": "bf16", "micro_batch": 1, "grad_accum": 1, "context": 4096, "lora_rank": 0,
                          "quantization": "none", "zero_stage": 0, "offload": "none", "gpus": 1, "tp": 1, "pp": 1,
                          "grad_checkpointing": True, **knobs}}
        problem = load_problem(tmp_goal(goal))
        config = {knob: values[0] for knob, values in problem.domains.items()}
        return problem.evaluator().assess(config)

    assert level(1e9, 0.05).values["pressure"] == "low"
    # seed 004 sec. 3's own lower ends (~50M, ~0.5B, 5B tokens) reach their levels
    assert [level(tokens, 1.0).values["pressure"] for tokens in (5e7, 5e8, 5e9)] == ["low", "medium", "high"]
    assert level(2e9, 0.5).values["pressure"] == "medium"
    high = level(1.2e10, 1.0)
    assert high.values["pressure"] == "high"
    assert [v.rule for v in high.violations] == ["synthetic/mix-real-data"]
    assert high.violations[0].severity == "warning"
    assert level(1.2e10, 0.9, lora_rank=64).violations[0].rule == "synthetic/full-finetune-for-high-pressure"
    assert level(0.2e9, 1.0).values["learning_rate"] == pytest.approx(2e-5)       # low: full fine-tune rate
    assert level(1.2e10, 0.7).values["gradient_clipping"] < level(0.2e9, 1.0).values["gradient_clipping"]
