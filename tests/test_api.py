"""The Python API: tplan.solve / tplan.check take a path or a dict and answer as the JSON contract does."""

from __future__ import annotations

import re

import pytest
import yaml

import tplan
from conftest import EXAMPLES, ROOT, run_json


def test_readme_python_example_runs():
    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})  # the documented example, as a user pastes it


def test_solve_on_a_path_equals_the_command_line_json():
    code, expected = run_json("solve", EXAMPLES / "quickstart.yaml")
    answer = tplan.solve(EXAMPLES / "quickstart.yaml")
    assert code == 0 and answer.ok
    assert answer.to_dict() == expected


def test_check_reports_a_violation_and_its_numbers():
    goal = {"model": "llama-2-7b", "data": {"tokens": 1e8}, "hardware": {"gpu": "a100-80gb"},
            "knobs": {"precision": "bf16", "zero_stage": 0, "offload": "none", "lora_rank": 0, "micro_batch": 1,
                      "context": 512, "grad_checkpointing": True}}
    answer = tplan.check(goal)
    assert answer.status == "fail" and not answer.ok
    assert [violation["rule"] for violation in answer.violations] == ["memory/fits-gpu-memory"]
    assert answer.estimate["memory_per_gpu_bytes"] > 80 * 2**30


def test_infeasible_goal_names_its_conflict_and_repairs():
    answer = tplan.solve({"model": "llama-2-7b", "data": {"tokens": 1e8}, "hardware": {"gpu": "rtx-4090"},
                          "knobs": {"lora_rank": 0, "offload": "none"}})
    assert answer.status == "infeasible" and answer.config is None
    assert answer.conflict == ["memory/fits-gpu-memory"] and answer.suggestions


def test_a_missed_deadline_is_repaired_with_more_nodes_or_fewer_tokens():
    goal = {"model": "llama-3.2-1b", "task": "pretrain", "data": {"tokens": 2e10, "global_batch": 512},
            "hardware": {"gpu": "a100-80gb", "gpus_per_node": 8}, "deadline": "24h"}
    answer = tplan.solve(goal)
    assert answer.status == "infeasible" and answer.conflict == ["time/meets-deadline"]
    by_change = {repair["change"]: repair for repair in answer.repairs}
    nodes = by_change["use 2 nodes"]
    assert nodes["passes"] and nodes["config"]["nodes"] == 2
    assert nodes["estimate"]["train_seconds"] <= 24 * 3600
    fewer = next(repair for change, repair in by_change.items() if change.startswith("train "))
    assert fewer["passes"] and fewer["estimate"]["training_tokens"] == fewer["goal_changes"]["data.tokens"] < 2e10
    assert fewer["estimate"]["train_seconds"] <= 24 * 3600


def test_memory_is_repaired_by_an_8_bit_or_paged_optimizer_the_search_does_not_try_unasked():
    """AdamW's 8-bit and paged states are the same training in less memory: a repair offers them (the
    knob's repair values), re-solved with its time and cost."""
    goal = {"model": "qwen2.5-1.5b", "data": {"tokens": 5e7}, "hardware": {"gpu": "rtx-3090"},
            "knobs": {"lora_rank": 0, "offload": "none", "context": 1024}}
    answer = tplan.solve(goal)
    assert answer.status == "infeasible" and answer.conflict == ["memory/fits-gpu-memory"]
    [optimizer] = [repair for repair in answer.repairs if repair["change"].startswith("allow optimizer ")]
    assert optimizer["passes"] and optimizer["config"]["optimizer"] in ("adamw-8bit", "paged-adamw-8bit", "paged-adamw")
    assert tplan.check({**goal, "knobs": optimizer["config"]}).status == "pass"
    assert any(hint.startswith("allowing optimizer") and " h, " in hint for hint in answer.suggestions)


def test_a_missed_budget_is_repaired_with_fewer_tokens_and_the_cost_it_needs():
    goal = {"model": "qwen2.5-3b", "task": "pretrain", "data": {"tokens": 5e9},
            "hardware": {"gpu": "a100-80gb", "gpus_per_node": 8}, "budget": 100, "knobs": {"context": 2048}}
    answer = tplan.solve(goal, time_limit=60)
    assert answer.status == "infeasible" and answer.conflict == ["time/within-budget"]
    fewer = next(repair for repair in answer.repairs if repair["change"].startswith("train "))
    assert fewer["passes"] and fewer["estimate"]["cost"] <= 100 and fewer["goal_changes"]["data.tokens"] < 5e9
    relaxed = next(repair for repair in answer.repairs if repair["change"].startswith("relax time/within-budget"))
    cheapest = tplan.solve({key: value for key, value in goal.items() if key != "budget"} | {"objective": "cost"},
                           explain=False)
    assert relaxed["estimate"]["cost"] == pytest.approx(cheapest.estimate["cost"], rel=1e-6)


def test_too_few_synthetic_tokens_are_repaired_with_the_level_s_floor():
    goal = {"model": "qwen2.5-1.5b", "data": {"tokens": 3e7, "synthetic_pressure": "low"},
            "hardware": {"gpu": "a100-80gb"}}
    answer = tplan.solve(goal)
    assert answer.status == "infeasible" and answer.conflict == ["synthetic/enough-tokens"]
    more = next(repair for repair in answer.repairs if repair["change"].startswith("train "))
    assert more["passes"] and more["goal_changes"]["data.tokens"] == pytest.approx(5e7)   # seed 004's low floor


def test_a_context_too_long_is_repaired_with_the_longest_halving_that_fits():
    goal = {"model": "llama-3.1-8b", "data": {"tokens": 1e8}, "hardware": {"gpu": "a100-80gb"},
            "knobs": {"context": 131072, "lora_rank": 16}}
    answer = tplan.solve(goal)
    assert answer.status == "infeasible" and answer.conflict == ["memory/fits-gpu-memory"]
    [longest] = [repair for repair in answer.repairs if repair["change"].startswith("use context ")]
    context = longest["config"]["context"]
    assert longest["passes"] and context < 131072
    assert tplan.check({**goal, "knobs": longest["config"]}).status == "pass"
    twice = tplan.solve({**goal, "knobs": {**goal["knobs"], "context": 2 * context}}, explain=False)
    assert twice.status == "infeasible"   # the halving above it does not fit


def test_memory_is_repaired_by_renting_a_larger_gpu():
    answer = tplan.solve({"model": "llama-2-7b", "data": {"tokens": 1e8}, "hardware": {"gpu": "rtx-4090"},
                          "knobs": {"lora_rank": 0, "offload": "none"}})
    rented = [repair for repair in answer.repairs if repair["change"].startswith("rent ")]
    assert rented and all(repair["passes"] for repair in rented)
    for repair in rented:
        gpu = tplan.catalog.gpus()[repair["config"]["gpu"]]
        assert gpu["memory_gib"] > 24 and repair["estimate"]["memory_per_gpu_bytes"] <= gpu["memory_gib"] * 2**30


def test_bad_input_raises_input_error_with_the_place():
    with pytest.raises(tplan.InputError, match=r"data.tokens.*token count"):
        tplan.solve({"model": "gpt2", "data": {"tokens": "lots"}, "hardware": {"gpu": "a100-80gb"}})
    with pytest.raises(tplan.InputError, match="finite"):
        tplan.check({"model": "gpt2", "data": {"tokens": float("nan")}, "hardware": {"gpu": "a100-80gb"}})


def test_importing_tplan_does_not_load_or_tools():
    import subprocess
    import sys

    probe = "import sys, tplan; print('ortools' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"


def test_a_dict_goal_reads_relative_paths_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "team.yaml").write_text("pack: team\nconstraints:\n"
                                        "  - {id: small, expr: \"micro_batch <= 2\", message: m}\n")
    monkeypatch.chdir(tmp_path)
    answer = tplan.solve({"model": "gpt2", "data": {"tokens": 1e8}, "hardware": {"gpu": "a100-80gb"},
                          "rules": ["team.yaml"], "knobs": {"micro_batch": [1, 2, 4, 8], "context": 1024}},
                         explain=False)
    assert answer.ok and answer.config["micro_batch"] <= 2


RUN = {"model": "gpt2", "hardware": {"gpu": "a100-80gb"},
       "knobs": {"context": 1024, "micro_batch": [4, 8], "precision": "bf16", "zero_stage": 0, "offload": "none",
                 "lora_rank": 0, "quantization": "none"}}


@pytest.mark.parametrize("data", [
    {"samples": 64000, "tokens_per_sample": 1024, "global_batch": 64},
    {"epochs": 4, "dataset_tokens": "16.384M", "global_batch": 64},
    {"steps": 1000, "global_batch": 64},
    {"steps": 1000, "global_batch_tokens": 65536},
])
def test_samples_epochs_and_steps_are_the_same_run_as_its_tokens(data):
    tokens = tplan.solve({**RUN, "data": {"tokens": 65_536_000, "global_batch": 64}}, explain=False)
    other = tplan.solve({**RUN, "data": data}, explain=False)
    assert other.config == tokens.config
    for key in ("training_tokens", "optimizer_steps", "train_seconds"):
        assert other.estimate[key] == pytest.approx(tokens.estimate[key], rel=1e-12), key


@pytest.mark.parametrize("data, message", [
    ({"samples": 5}, "data.tokens_per_sample with data.samples"),
    ({"tokens": 1e9, "steps": 4}, "exactly one of"),
    ({"dataset_tokens": 1e9}, "data.epochs with data.dataset_tokens"),
    ({}, "not none"),
])
def test_an_amount_of_data_is_given_exactly_once(data, message):
    with pytest.raises(tplan.InputError, match=message):
        tplan.solve({**RUN, "data": data}, explain=False)


def test_the_answer_prints_money_at_the_goal_price_or_the_list_price():
    goal = {**RUN, "data": {"tokens": 65_536_000, "global_batch": 64}}
    free = tplan.solve(goal, explain=False)
    priced = tplan.solve({**goal, "hardware": {**goal["hardware"], "price_per_gpu_hour": 2.5}}, explain=False)
    list_price = tplan.catalog.list_prices()["prices"]["a100-80gb"]
    assert free.estimate["cost"] == pytest.approx(list_price * free.estimate["gpu_hours"], rel=1e-12)
    assert priced.estimate["cost"] == pytest.approx(2.5 * priced.estimate["gpu_hours"], rel=1e-12)


# ---------------------------------------------------------------- which GPU, at what cost

CHOICE = {"model": "llama-3.2-1b", "task": "finetune", "data": {"tokens": 2e8},
          "hardware": {"gpu": ["a100-80gb", "h100-sxm", "l40s"], "gpus_per_node": 4,
                       "price_per_gpu_hour": {"a100-80gb": 1.9, "h100-sxm": 3.1, "l40s": 0.9}},
          "deadline": "12h",
          "knobs": {"precision": ["bf16", "fp8"], "context": 2048, "lora_rank": 0, "offload": "none",
                    "quantization": "none", "micro_batch": [1, 2, 4, 8]}}


def _alone(goal: dict, gpu: str) -> tplan.Answer:
    return tplan.solve({**goal, "hardware": {**goal["hardware"], "gpu": gpu}}, explain=False)


def test_several_gpus_give_the_cheapest_plan_that_meets_the_deadline():
    goal = {**CHOICE, "objective": "cost"}
    answer = tplan.solve(goal, explain=False)
    alone = {gpu: _alone(goal, gpu) for gpu in goal["hardware"]["gpu"]}
    costs = {gpu: each.estimate["cost"] for gpu, each in alone.items() if each.ok}
    assert answer.status == "optimal" and all(each.status in ("optimal", "infeasible") for each in alone.values())
    assert answer.config["gpu"] == min(costs, key=costs.get)
    assert answer.estimate["cost"] == pytest.approx(min(costs.values()), rel=1e-9)
    assert answer.estimate["train_seconds"] <= 12 * 3600
    assert [choice["gpu"] for choice in answer.gpu_choices] == goal["hardware"]["gpu"]
    assert answer.config["nodes"] == 1


def test_a_budget_gives_the_fastest_plan_within_it():
    unlimited = {gpu: _alone({**CHOICE, "objective": "time"}, gpu) for gpu in CHOICE["hardware"]["gpu"]}
    cheapest = min(each.estimate["cost"] for each in unlimited.values() if each.ok)
    fastest = min(unlimited.values(), key=lambda each: each.estimate["train_seconds"])
    budget = (cheapest + fastest.estimate["cost"]) / 2      # between the cheapest plan and the fastest one's cost
    goal = {**CHOICE, "objective": "time", "budget": budget}
    answer = tplan.solve(goal, explain=False)
    within = {gpu: _alone(goal, gpu) for gpu in goal["hardware"]["gpu"]}
    times = {gpu: each.estimate["train_seconds"] for gpu, each in within.items() if each.ok}
    assert answer.ok and answer.estimate["cost"] <= budget
    assert answer.estimate["train_seconds"] == pytest.approx(min(times.values()), rel=1e-9)
    assert answer.estimate["train_seconds"] >= fastest.estimate["train_seconds"]


@pytest.mark.parametrize("change, message", [
    ({"hardware": {**CHOICE["hardware"], "price_per_gpu_hour": {"a100-80gb": 1.9}}}, "h100-sxm has none"),
    ({"hardware": {**CHOICE["hardware"], "gpu": "rtx-4090", "price_per_gpu_hour": 0}, "budget": 10},
     "price_per_gpu_hour with a budget"),
    ({"knobs": {**CHOICE["knobs"], "gpu": "b200"}}, "a GPU among hardware.gpu"),
    ({"hardware": {"gpu": ["a100-80gb", "rtx-4090"], "gpus_per_node": 4}, "objective": "cost"},
     "a price for each GPU compared by cost"),   # dollars against GPU-hours would rank nothing
])
def test_prices_budgets_and_gpu_picks_are_checked(change, message):
    with pytest.raises(tplan.InputError, match=message):
        tplan.solve({**CHOICE, **change}, explain=False)


def test_an_answer_config_pinned_again_must_agree_with_its_dp_and_nodes():
    answer = tplan.solve({**CHOICE, "objective": "cost"}, explain=False)
    assert tplan.check({**CHOICE, "knobs": answer.config}).status == "pass"
    with pytest.raises(tplan.InputError, match="what gpus"):
        tplan.check({**CHOICE, "knobs": {**answer.config, "dp": answer.config["dp"] + 1}})


def test_an_infeasible_goal_shows_the_smallest_footprint_not_the_fastest_plan():
    """On a GPU too small for any plan, the suggestion for the memory rule is the plan that needs the
    least memory (checked against every configuration), not the fastest plan with memory ignored."""
    import itertools

    from tplan.evaluate import format_value
    from tplan.goal import load_problem
    from tplan.load import from_data

    goal = {"model": "mistral-nemo-12b", "data": {"tokens": 1e8}, "hardware": {"gpu": "rtx-4050-laptop"},
            "knobs": {"lora_rank": [0, 16], "quantization": ["none", "nf4"], "micro_batch": [1, 4],
                      "context": [512, 2048], "optimizer": ["adamw", "adamw-8bit"], "offload": "none",
                      "zero_stage": 0, "precision": "bf16"}}
    answer = tplan.solve(goal)
    assert answer.status == "infeasible" and "memory/fits-gpu-memory" in answer.conflict
    problem = load_problem(from_data(goal, "<goal dict>"))
    evaluator = problem.evaluator()
    assessments = [evaluator.assess(dict(zip(problem.domains, combination)))
                   for combination in itertools.product(*problem.domains.values())]
    smallest = min(each.values["memory_per_gpu"] for each in assessments  # every other rule met
                   if all(v.rule == "memory/fits-gpu-memory" or v.severity != "error" for v in each.violations))
    [hint] = [hint for hint in answer.suggestions if hint.startswith("without memory/fits-gpu-memory")]
    assert f"needs {format_value(smallest, 'bytes')} per GPU" in hint


def test_repairs_of_an_infeasible_goal_are_verified_plans():
    """Each repair carries the re-solved plan: a widening passes every rule as a pinned config; a
    relaxation breaks only the rule it relaxes."""
    goal = {"model": "qwen2.5-3b", "task": "pretrain", "data": {"tokens": 1e9}, "hardware": {"gpu": "rtx-3090"},
            "knobs": {"offload": "none", "micro_batch": [1, 2], "context": 2048, "precision": "bf16",
                      "optimizer": "adamw", "zero_stage": [0, 1]}}
    answer = tplan.solve(goal)
    assert answer.status == "infeasible" and answer.repairs
    assert [repair["passes"] for repair in answer.repairs] == sorted((r["passes"] for r in answer.repairs), reverse=True)
    widenings = [repair for repair in answer.repairs if repair["passes"]]
    assert any(repair["config"]["offload"] != "none" for repair in widenings)
    for repair in answer.repairs:
        changed = {**goal, "hardware": {**goal["hardware"]}, "data": {**goal["data"]}}
        for key, value in repair.get("goal_changes", {}).items():   # another GPU kind, more nodes, fewer tokens
            section, name = key.split(".")
            changed[section][name] = value
        checked = tplan.check({**changed, "knobs": repair["config"]})
        if repair["passes"]:
            assert checked.status == "pass", repair["change"]
        else:
            assert [v["rule"] for v in checked.violations if v["severity"] == "error"] == [
                repair["change"].split(":")[0].removeprefix("relax ")]


def test_binding_rules_come_with_headroom_the_plan_they_stop_and_a_runner_up():
    """A binding rule stops a better configuration one knob away - with the run's global batch kept
    (micro-batch 32 with fewer accumulation steps), never a layout that does not exist."""
    goal = {"model": "mistral-nemo-12b", "data": {"tokens": 1.5e8}, "hardware": {"gpu": "h100-sxm"},
            "knobs": {"lora_rank": 16, "context": 2048}}
    answer = tplan.solve(goal)
    assert [detail["rule"] for detail in answer.binding_details] == answer.binding
    memory = next(detail for detail in answer.binding_details if detail["rule"] == "memory/fits-gpu-memory")
    assert 0 < memory["headroom"] < 1 and "GiB per GPU" in memory["now"]
    assert not {"batch/global-batch", "parallelism/whole-groups"} & set(answer.binding)
    # the plan it stops is better and really breaks the rule, and nothing that defines configurations
    change = dict(part.split() for part in memory["blocked"]["change"].split(", "))
    stopped = tplan.check({**goal, "knobs": {**answer.config, **{knob: int(value) for knob, value in change.items()}}})
    assert [violation["rule"] for violation in stopped.violations] == ["memory/fits-gpu-memory"]
    assert stopped.estimate["train_seconds"] < answer.estimate["train_seconds"]
    assert memory["blocked"]["better"] == pytest.approx(1 - stopped.estimate["train_seconds"]
                                                        / answer.estimate["train_seconds"], rel=1e-9)
    # the runner-up passes every rule and is no better than the plan
    runner_up = tplan.check({**goal, "knobs": answer.runner_up["config"]})
    assert runner_up.status == "pass"
    assert runner_up.estimate["train_seconds"] >= answer.estimate["train_seconds"]


def test_a_fine_tune_searches_within_the_context_its_model_was_trained_for():
    # GPT-2 was trained at 1,024 tokens: the default context (2,048) would rule out every fine-tune of it.
    answer = tplan.solve({"model": "gpt2", "data": {"tokens": 1e8}, "hardware": {"gpu": "rtx-4090"}})
    assert answer.ok and answer.to_dict()["config"]["context"] == 1024
    pretrain = tplan.solve({"model": "gpt2", "task": "pretrain", "data": {"tokens": 1e8}, "hardware": {"gpu": "rtx-4090"}})
    assert pretrain.to_dict()["config"]["context"] == 2048


def test_a_goal_beyond_1024_gpus_gets_default_domains_within_each_knobs_range(tmp_path):
    """The hardware total joins a knob's default domain only where the knob's range allows it: 256 nodes
    of 8 used to put pp 2,048 in pp's default domain and fail the goal, naming knobs.pp it does not set."""
    from tplan.goal import load_problem

    goal = {"model": "llama-3.1-70b", "task": "pretrain", "data": {"tokens": 2e12},
            "hardware": {"gpu": "h100-sxm", "gpus_per_node": 8, "nodes": 256}, "deadline": "30d"}
    path = tmp_path / "goal.yaml"
    path.write_text(yaml.safe_dump(goal))
    domains = load_problem(path).domains
    assert max(domains["gpus"]) == 2048 and max(domains["pp"]) <= 1024


@pytest.mark.parametrize("gpu, knobs, searched", [
    ("a100-80gb", {}, False), ("h100-sxm", {}, False), ("v100", {}, True), ("t4", {}, True),
    ("a100-80gb", {"precision": ["bf16", "fp16"]}, True)])
def test_fp16_is_searched_by_default_only_without_bf16_units(tmp_path, gpu, knobs, searched):
    """fp16 needs loss scaling where bf16 runs at the same rate without it, so the default precision
    domain has fp16 only on GPUs without bf16 tensor cores (knobs.yaml default_where); a goal that
    lists it gets it anywhere. Under Megatron-LM fp16 keeps 16-bit gradients, which once made a
    LoRA plan on A100s pick fp16 for a 0.001% gain."""
    from tplan.goal import load_problem

    goal = {"model": "llama-3.2-1b", "task": "finetune", "data": {"tokens": 1e7},
            "hardware": {"gpu": gpu, "gpus_per_node": 8}, "knobs": knobs}
    path = tmp_path / "goal.yaml"
    path.write_text(yaml.safe_dump(goal))
    assert ("fp16" in load_problem(path).domains["precision"]) is searched


def test_a_team_pack_changed_between_two_answers_in_one_process_is_read_anew(tmp_path):
    """Rule packs are read once per text (packs.load_rules keeps the merged RuleSet, for the repairs that
    re-read a goal): a pack edited between two answers of one process, to the same length, must count."""
    from tplan.goal import load_problem

    goal = {"model": "llama-2-7b", "data": {"tokens": 1e8}, "hardware": {"gpu": "a100-80gb"},
            "knobs": {"precision": "bf16", "zero_stage": 0, "offload": "none", "lora_rank": 16, "micro_batch": 1,
                      "context": 512, "grad_checkpointing": True}}
    pack = tmp_path / "team.yaml"

    def answer(limit: str):
        pack.write_text(yaml.safe_dump({"pack": "team", "constraints": [
            {"id": "small", "expr": f"memory_per_gpu <= {limit}", "message": "over the team's limit"}]}))
        return tplan.check(goal, rules=(str(pack),))
    assert answer("1e30").ok and not answer("1e03").ok and answer("1e30").ok
    path = tmp_path / "goal.yaml"
    path.write_text(yaml.safe_dump(goal))
    assert load_problem(path, extra_rules=(str(pack),)).rules is load_problem(path, extra_rules=(str(pack),)).rules
