"""Physics against published formulas and verdicts (data/published/figures.yaml)."""

from __future__ import annotations

import pytest

from conftest import write_goal
from tplan import catalog
from tplan.goal import load_problem

GPT3_STYLE = {"layers": 24, "hidden": 2048, "heads": 16, "ffn_hidden": 8192, "vocab": 50257,
              "gated_mlp": False, "norm": "layernorm", "dropout": True, "tied_embeddings": True}
PINNED = {"precision": "bf16", "optimizer": "adamw", "micro_batch": 4, "grad_accum": 1, "context": 2048,
          "zero_stage": 0, "offload": "none", "grad_checkpointing": False, "lora_rank": 0,
          "quantization": "none", "gpus": 1, "tp": 1, "pp": 1, "cp": 1, "vp": 1}


def assess(tmp_path, knobs=None, **goal):
    goal = {"model": GPT3_STYLE, "task": "pretrain", "data": {"tokens": 1e9},
            "hardware": {"gpu": "h100-sxm", "gpus_per_node": 8, "nodes": 8}, **goal}
    problem = load_problem(write_goal(tmp_path, goal), pinned=True)
    config = {**PINNED, **(knobs or {})}
    return problem.evaluator().assess(config).values


@pytest.mark.parametrize("stage, bytes_per_param", [
    (0, 16), (1, 4 + 12 / 64), (2, 2 + 14 / 64), (3, 16 / 64)])
def test_zero_paper_model_states_for_7_5b_on_64_gpus(tmp_path, stage, bytes_per_param):
    """ZeRO paper Fig. 1: psi = 7.5B, K = 12, Nd = 64 -> 120, 31.4, 16.6, 1.9 GB."""
    seven_b = {**GPT3_STYLE, "layers": 36, "hidden": 4096, "heads": 32, "ffn_hidden": 16384}  # counts 7.45e9
    values = assess(tmp_path, {"zero_stage": stage, "gpus": 64}, model={**seven_b, "params": 7.5e9})
    # ZeRO-3 also keeps the norms and biases whole (DeepSpeed's persistence threshold; the paper omits them)
    persistent = catalog.vector_params({**seven_b, "params": 7.5e9}) * 2 * (1 - 1 / 64) if stage == 3 else 0
    assert values["zero3_persistent_bytes"] == pytest.approx(persistent, rel=1e-12)
    states = values["weight_memory"] - persistent + values["gradient_memory"] + values["optimizer_memory"]
    assert states == pytest.approx(bytes_per_param * 7.5e9, rel=1e-12)


def layer(values):
    return values["layer_bytes"]


def test_korthikanti_activations_per_layer_without_recomputation(tmp_path):
    s, b, h, a = 2048, 4, 2048, 16
    values = assess(tmp_path, attention="eager")
    assert layer(values) == pytest.approx(s * b * h * (34 + 5 * a * s / h), rel=1e-12)


def test_flash_attention_removes_the_score_term(tmp_path):
    values = assess(tmp_path, attention="flash")
    assert layer(values) == pytest.approx(2048 * 4 * 2048 * 34, rel=1e-12)


@pytest.mark.parametrize("dropout, knobs, bytes_per_score", [
    (True, {}, 13 + 19), (False, {}, 8 + 14), (True, {"grad_checkpointing": True}, 2 * 13 + 19),
    (False, {"grad_checkpointing": True}, 2 * 8 + 14),
    (True, {"tp": 2, "gpus": 2}, 13 + 19)])
def test_eager_attention_moves_every_score_through_hbm(tmp_path, dropout, knobs, bytes_per_score):
    """Eager attention's scores: forward write 2, softmax 2 + 2, dropout 2 + 1 + 2, AV read 2; backward
    the same trips for the gradients, dropout's 2 + 1 + 2 and softmax's 2 + 2 + 2 (Dao et al. 2022, sec. 3);
    recomputation repeats the forward. Flash attention moves none of them."""
    s, b, a, layers = 2048, 4, 16, 24
    goal = {"model": {**GPT3_STYLE, "dropout": dropout}}
    eager = assess(tmp_path, knobs, attention="eager", **goal)
    flash = assess(tmp_path, knobs, attention="flash", **goal)
    tp = knobs.get("tp", 1)
    expected = b * a / tp * s * s * layers * bytes_per_score / 3.35e12   # H100 SXM datasheet: 3.35 TB/s
    assert eager["eager_scores_seconds"] == pytest.approx(expected, rel=1e-12)
    assert flash["eager_scores_seconds"] == 0
    assert eager["attention_seconds"] - flash["attention_seconds"] == pytest.approx(expected, rel=1e-9)


def test_full_recomputation_keeps_the_block_input(tmp_path):
    values = assess(tmp_path, {"grad_checkpointing": True})
    assert layer(values) == pytest.approx(2 * 2048 * 4 * 2048, rel=1e-12)


def test_tensor_and_sequence_parallel_divide_activations(tmp_path):
    one = assess(tmp_path, attention="eager")
    four = assess(tmp_path, {"tp": 4, "gpus": 4}, attention="eager")
    assert four["activation_memory"] == pytest.approx(one["activation_memory"] / 4, rel=1e-12)


def test_pipeline_first_stage_holds_all_layers_of_activations(tmp_path):
    one = assess(tmp_path)
    four = assess(tmp_path, {"pp": 4, "gpus": 4, "grad_accum": 8})
    assert four["activation_memory"] == pytest.approx(
        max(24 * one["layer_bytes"], 6 * one["layer_bytes"] + one["logits_bytes"]), rel=1e-12)


@pytest.mark.parametrize("pp, vp, micro_batches", [
    (4, 2, 4), (4, 2, 8), (4, 2, 16), (2, 4, 2), (2, 4, 6), (8, 3, 8), (8, 3, 16), (4, 3, 12)])
def test_interleaved_first_stage_holds_what_torch_schedule_warms_up(tmp_path, pp, vp, micro_batches):
    """The first stage of an interleaved 1F1B schedule holds its warm-up forwards and one more before
    its first backward, never more than all of its pp x micro-batch chunks - as torch's own
    ScheduleInterleaved1F1B counts them (a chunk holds layers / (pp x vp) layers)."""
    schedules = pytest.importorskip("torch.distributed.pipelining.schedules")
    warmup = schedules._get_warmup_ops(0, vp, pp, pp, micro_batches)
    chunks_held = min(warmup + 1, micro_batches * vp)
    one = assess(tmp_path, attention="eager")
    values = assess(tmp_path, {"pp": pp, "vp": vp, "gpus": pp, "grad_accum": micro_batches}, attention="eager")
    assert values["activation_memory"] == pytest.approx(24 * one["layer_bytes"] * chunks_held / (pp * vp), rel=1e-12)


def test_pipeline_with_fewer_micro_batches_than_stages_holds_them_all(tmp_path):
    # torch's Schedule1F1B: the first stage runs min(n_microbatches, stages) forwards before a backward
    one = assess(tmp_path, attention="eager")
    values = assess(tmp_path, {"pp": 4, "gpus": 4, "grad_accum": 2}, attention="eager")
    assert values["activation_memory"] == pytest.approx(24 * one["layer_bytes"] * 2 / 4, rel=1e-12)


def test_training_flops_are_six_n_plus_attention(tmp_path):
    values = assess(tmp_path)
    n = values["matmul_params"]
    assert values["model_flops_per_token"] == pytest.approx(6 * n + 12 * 24 * 2048 * 2048, rel=1e-12)
    recompute = assess(tmp_path, {"grad_checkpointing": True})
    assert recompute["hardware_flops_per_token"] == pytest.approx(8 * n + 16 * 24 * 2048 * 2048, rel=1e-12)


def test_no_plan_beats_the_flop_bound(tmp_path):
    """figures.yaml verdict: train_seconds >= 6 N D / (GPUs x dense peak); MFU <= 1."""
    for knobs in ({}, {"micro_batch": 32}, {"gpus": 8, "zero_stage": 3}, {"precision": "fp8"}):
        values = assess(tmp_path, knobs)
        gpus = knobs.get("gpus", 1)
        bound = 6 * values["matmul_params"] * 1e9 / (gpus * values["peak_flops"])
        assert values["train_seconds"] >= bound
        assert 0 < values["model_flops_utilization"] < 1
