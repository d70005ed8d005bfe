"""tplan against published figures (scripts/accuracy.py, docs/accuracy.md).

Exact cases are pinned exactly; measured cases get an error band, and every measured case that
falls outside its band is an expected failure (strict) whose reason is the diagnosis, so a fix
to the rule packs shows up as an XPASS to act on rather than silently widening a bound.
"""

from __future__ import annotations

import importlib.util
import re
import statistics
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
_SPEC = importlib.util.spec_from_file_location("tplan_accuracy", ROOT / "scripts" / "accuracy.py")
accuracy = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(accuracy)


@pytest.fixture(scope="module")
def sections():
    return accuracy.build()


def records(sections, key) -> dict:
    return {record["id"]: record for record in sections[key]["records"]}


def figures_yaml() -> dict:
    return yaml.safe_load((ROOT / "data" / "published" / "figures.yaml").read_text())


# ---------------------------------------------------------------- the transcription


def test_transcribed_figures_match_figures_yaml():
    figures = figures_yaml()
    assert accuracy.PARAM_COUNTS == {k: v for k, v in figures["param_counts"].items() if k != "source"}
    assert accuracy.GPUS == {k: v for k, v in figures["gpus"].items() if k != "source"}
    for name, entry in accuracy.MORE_GPUS.items():
        assert {k: v for k, v in figures["more_gpus"][name].items() if k != "note"} == entry
    example = figures["deepspeed_estimators"]["example"]
    assert [float(x) for x in re.findall(r"(\d+\.\d+)", example)] == list(accuracy.DEEPSPEED["example_gib"].values())
    assert "2851M params, 32M largest layer" in example
    check = figures["activations_variants"]["zero_paper_check"]
    assert f"~{accuracy.ZERO_ACTIVATIONS['gb']} GB" in check
    assert f"~{accuracy.ZERO_ACTIVATIONS['gb_checkpointed']} GB" in check
    answers = [verdict["answer"] for verdict in figures["verdicts"]]
    assert answers[:2] == ["does not fit", "fits"]


# ---------------------------------------------------------------- (a), (b): exact formulas


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_zero_paper_model_states_to_the_byte(sections, stage):
    record = records(sections, "zero")[f"zero{stage}"]
    assert abs(record["tplan_bytes"] - record["formula_bytes"]) < 1  # bytes
    # and the paper's printed figure is the formula rounded to one decimal (120 / 31.4 / 16.6 / 1.9 GB)
    assert abs(record["tplan_bytes"] / 1e9 - accuracy.ZERO_PAPER["gb"][stage]) <= 0.05 + 1e-9


@pytest.mark.parametrize("variant", ["plain", "flash", "tp_sp", "selective", "tp_sp_selective", "full"])
def test_korthikanti_activations_exact(sections, variant):
    record = records(sections, "korthikanti")[variant]
    assert record["exact"]
    assert record["tplan_bytes"] == pytest.approx(record["formula_bytes"], rel=1e-12)


def test_tensor_parallel_without_sequence_parallel_is_documented_as_not_modelled(sections):
    record = records(sections, "korthikanti")["tp_no_sp"]
    assert not record["exact"] and record["tplan_bytes"] < record["formula_bytes"]


def test_zero_paper_gpt2_activations(sections):
    rows = records(sections, "zero_activations")
    # the paper's 60 GB is its own 12 h b s L rule in 16-bit ...
    assert rows["zero_formula"]["tplan_bytes"] == pytest.approx(60e9, rel=0.01)
    # ... and tplan's layer count is Korthikanti's: 34 sbh (flash) and 34 + 5as/h = 114 sbh (eager) per layer
    sbh_layers = 1024 * 32 * 1600 * 48
    assert rows["flash_layers"]["tplan_bytes"] == pytest.approx(34 * sbh_layers, rel=1e-12)
    assert rows["eager_layers"]["tplan_bytes"] == pytest.approx((34 + 5 * 25 * 1024 / 1600) * sbh_layers, rel=1e-12)
    # full recomputation keeps 2sbh per layer: 5.0 GB against the paper's "about 8 GB"
    assert rows["checkpointed_inputs"]["tplan_bytes"] == pytest.approx(2 * sbh_layers, rel=1e-12)
    assert rows["checkpointed_inputs"]["tplan_bytes"] < rows["checkpointed_inputs"]["published_bytes"]


# ---------------------------------------------------------------- (c) parameter counts


def test_figures_param_counts_exact(sections):
    rows = [r for r in sections["params"]["records"] if r["group"] == "figures"]
    assert {r["id"] for r in rows} == set(accuracy.PARAM_COUNTS)
    for row in rows:
        assert row["tplan"] == row["published"], row["id"]


def test_every_catalog_model_with_published_params_within_one_percent(sections):
    rows = [r for r in sections["params"]["records"] if r["group"] == "catalog"]
    published = {name for name, entry in accuracy.catalog.models().items() if "published_params" in entry}
    assert {r["id"] for r in rows} == published and rows
    for row in rows:
        assert row["tplan"] == pytest.approx(row["published"], rel=0.01), row["id"]


def test_lora_counts_printed_by_peft_exact(sections):
    rows = [r for r in sections["params"]["records"] if r["group"] == "lora"]
    assert len(rows) == len(accuracy.LORA_COUNTS)
    for row in rows:
        assert (row["tplan"], row["tplan_all"]) == (row["published"], row["published_all"]), row["id"]


def test_t5_count_is_the_2851m_deepspeed_prints():
    assert accuracy.T5_3B["params"] == 2851598336
    assert int(accuracy.T5_3B["params"] / 1e6) == 2851 and int(accuracy.T5_3B_LARGEST_MODULE / 1e6) == 32


# ---------------------------------------------------------------- (d) GPUs


def test_gpu_datasheet_memory_and_peaks_within_one_percent(sections):
    rows = [r for r in sections["gpus"]["records"] if r["group"] == "datasheet"]
    assert {r["gpu"] for r in rows} == set(accuracy.GPUS)
    for figure in ("memory_gb", "bf16"):
        assert any(r["figure"].startswith(figure) for r in rows)
    for row in rows:  # memory, bandwidth, bf16 (fp32 accumulate on GeForce), fp8, tf32
        assert abs(row["error"]) <= 0.01, row["id"]


def test_derived_gpu_figures_within_their_stated_approximation(sections):
    for row in (r for r in sections["gpus"]["records"] if r["group"] == "derived"):
        # figures.yaml calls these derived (bf16_approx); exact ones (RTX 6000 Ada, B200) within 1%
        assert abs(row["error"]) <= (0.05 if "approx" in row["figure"] else 0.01), row["id"]


# ---------------------------------------------------------------- (e) DeepSpeed's estimators


def test_deepspeed_formulas_reproduce_the_memory_rst_example(sections):
    rows = records(sections, "deepspeed")
    for key, printed in accuracy.DEEPSPEED["example_gib"].items():
        assert round(rows[key]["formula_bytes"] / 2**30, 2) == printed, key


def test_tplan_differs_from_deepspeed_only_by_the_documented_terms(sections):
    rows = records(sections, "deepspeed")
    p, n = accuracy.T5_3B["params"], 8
    ds_ll = 4 * accuracy.T5_3B_LARGEST_MODULE
    # ZeRO paper 2 + 2 + 12 bytes/param vs DeepSpeed's 18/N: ZeRO-2 differs by the fp32 gradient copy (4P/N) ...
    assert rows["zero2_none"]["tplan_states"] == pytest.approx(2 * p + 14 * p / n, rel=1e-12)
    assert rows["zero2_none"]["formula_bytes"] - rows["zero2_none"]["tplan_states"] == pytest.approx(4 * p / n, abs=1)
    # ... ZeRO-3 by 2P/N (16 against 18 bytes over N), plus the gathered-layer term: DeepSpeed 4 x the largest
    # module, tplan 4 x the larger of the embedding and one block
    assert rows["zero3_none"]["tplan_states"] == pytest.approx(16 * p / n, rel=1e-12)
    gap = rows["zero3_none"]["formula_bytes"] - rows["zero3_none"]["tplan_bytes"]
    assert gap == pytest.approx(2 * p / n + ds_ll - rows["zero3_none"]["tplan_gathered"], abs=1)
    assert rows["zero3_full"]["tplan_states"] == 0
    # optimizer offload keeps exactly the 16-bit weights on the GPU, as DeepSpeed's 2P
    assert rows["zero2_optimizer"]["tplan_states"] == pytest.approx(2 * p, rel=1e-12)
    # host memory under ZeRO-3 offload is DeepSpeed's zero_init=1 figure (x 1.5 buffer factor in both)
    for key in ("zero3_optimizer", "zero3_full"):
        assert rows[key]["tplan_cpu_bytes"] == pytest.approx(rows[key]["ds_cpu_bytes"], rel=1e-12), key


def test_deepspeed_own_estimators_agree_with_the_formulas(sections):
    live = sections["deepspeed"]["live"]
    if live is None:
        pytest.skip("deepspeed is not importable")
    for record in sections["deepspeed"]["records"]:
        assert record["live_gib"] is not None, record["id"]
        assert record["live_gib"][1] == round(record["formula_bytes"] / 2**30, 2), record["id"]


# ---------------------------------------------------------------- (f) measured cases
# Bands, from what the script shows and why:
# * memory_per_gpu vs a measured allocator peak: -15% .. +30%. tplan adds the CUDA context and 10%
#   allocator fragmentation that torch's peak counters leave out (about +12-15% by construction) and
#   measured peaks spread 10-20%; below -15% tplan would call a run that OOMs "fits", so the lower
#   side is tight. The rows tplan's knobs express sit at +17..+22% (like for like: +5..+8%).
MEMORY_BAND, TENSOR_BAND = (-0.15, 0.30), (-0.15, 0.15)
ACTIVATIONS_OFFLOADED = "the recipe offloads activations to the CPU (no tplan knob)"
ZERO3_OFFLOAD = ("ZeRO-3 with full offload on the larger models: tplan counts the gathered working set "
                 "(stage3_max_live_parameters + prefetch bucket, as emitted) and still comes out LOW, i.e. it can "
                 "call a run that OOMs 'fits'; the T0_3B row now fits the band, the 7B/12B rows do not "
                 "(encoder-decoder stand-in; the README does not give its offload settings)")
MEMORY_OFF = {
    "peft-mt0-lora-offload": ZERO3_OFFLOAD,
    "peft-bloomz-lora-offload": ZERO3_OFFLOAD,
    "tt-8b-qlora-4090": ("memory_per_gpu just above the band (+30%): on a 7.4 GiB peak tplan's 0.5 GiB CUDA context "
                         "and 10% fragmentation weigh most; its tensors alone are +12%"),
    "tt-3b-lora": ACTIVATIONS_OFFLOADED,
    "tt-3b-qlora": ACTIVATIONS_OFFLOADED,
}
MEASURED_IDS = [case["id"] for case in accuracy.MEASURED if case["spec"] is not None]


def known(off: dict, ids: list[str]) -> list:
    return [pytest.param(i, marks=pytest.mark.xfail(reason=off[i], strict=True)) if i in off else i for i in ids]


@pytest.mark.parametrize("case_id", known(MEMORY_OFF, MEASURED_IDS))
def test_measured_peak_memory_within_band(sections, case_id):
    record = records(sections, "measured")[case_id]
    low, high = MEMORY_BAND
    assert low <= record["error"] <= high, f"{case_id}: tplan {record['error']:+.1%} vs measured"


TENSOR_OFF = {"tt-3b-ckpt": "tensors alone 15.1%, just above the band: under full recomputation tplan holds "
                            "every layer's block input and one rebuilt block at once, where the measured peak "
                            "(with compile and chunked cross-entropy) is lower; its memory_per_gpu is in the band"}


@pytest.mark.parametrize("case_id", known(TENSOR_OFF, [i for i in MEASURED_IDS if i not in MEMORY_OFF]))
def test_measured_peak_memory_like_for_like(sections, case_id):
    record = records(sections, "measured")[case_id]
    low, high = TENSOR_BAND
    assert low <= record["tensor_error"] <= high, f"{case_id}: tplan tensors {record['tensor_error']:+.1%}"
    assert record["fits"] == "yes"


def test_compile_saves_what_torchtune_measured(sections):
    # torchtune's "Optimization flags" table: adding torch.compile took Llama 3.2 3B from 60 to 51 GiB
    rows = records(sections, "measured")
    saved = rows["tt-3b-packed"]["tensor_bytes"] - rows["tt-3b-compile"]["tensor_bytes"]
    assert saved / ((60.0 - 51.0) * 2**30) == pytest.approx(1, abs=0.15)


def test_offload_host_memory_is_not_underestimated(sections):
    # peft reads the process RSS (model as loaded + Python); tplan counts offloaded states x 1.5, so it may
    # be well above, but it must not be much below (the host would run out).
    rows = [r for r in sections["measured"]["records"] if "cpu_error" in r]
    assert len(rows) == 3
    for row in rows:
        assert row["cpu_error"] >= -0.10, row["id"]


def test_qlora_paper_base_weights(sections):
    # The paper's 5,048 MB is not itemised and implies ~6 bits/param; tplan's NF4 arithmetic (4.127 bits + 16-bit
    # embeddings) must stay below it but not absurdly so.
    record = records(sections, "measured")["qlora-7b-base"]
    assert -0.25 <= record["error"] < 0


def test_qlora_65b_full_fine_tune_needs_more_than_780_gb(sections):
    assert records(sections, "measured")["qlora-65b-full"]["holds"]


def test_qlora_65b_fits_48_gb(sections):
    assert records(sections, "measured")["qlora-65b-qlora"]["holds"]


# ---------------------------------------------------------------- (g) verdicts


@pytest.mark.parametrize("verdict", ["7b_full_a100", "7b_lora_24gb", "flop_bound", "mt0_full_oom", "bloomz_full_oom"])
def test_verdicts_hold(sections, verdict):
    assert records(sections, "verdicts")[verdict]["pass"]


def test_flop_bound_covers_a_grid(sections):
    record = records(sections, "verdicts")["flop_bound"]
    assert record["checked"] >= 100 and record["worst_ratio"] >= 1


# ---------------------------------------------------------------- (h) runs that ran, (i) step time


MEASURED_RUNS = [run["id"] for path in sorted((accuracy.ROOT / "data" / "measured").glob("*.yaml"))
                 for run in yaml.safe_load(path.read_text())["runs"]]
LLAMA3_8K = ("the Llama 3 paper trained 405B at 8K context with 8-way tensor, 16-way pipeline (8 chunks per rank) "
             "parallelism and no activation checkpointing on 80 GB H100s; as torchtitan runs it (framework fsdp: "
             "DTensor keeps each projection's all-gathered input whole) tplan counts 146 GiB of activations on the "
             "first rank (130 GiB with 16 micro-batches per step, all in flight), and even Megatron-LM's sequence-parallel count would need about 70 GiB - Meta's own "
             "tensor-parallel and fused kernels, which keep them within 80 GB, are not published")
RAN_OFF = {"llama3-405b-pretrain-8k-8192gpu-h100": LLAMA3_8K, "llama3-405b-pretrain-8k-16384gpu-h100": LLAMA3_8K,
           "llama3-405b-pretrain-128k-16384gpu-h100": LLAMA3_8K + " (the same per GPU at 128K over 16-way context "
                                                                  "parallelism)"}


@pytest.mark.parametrize("run", known(RAN_OFF, MEASURED_RUNS))
def test_a_run_that_ran_fits(sections, run):
    # every measured run trained with the settings its file lists (framework, loss, knobs)
    assert records(sections, "ran")[run]["pass"], "tplan says a configuration that trained does not fit"


def test_peak_memory_the_runs_logged(sections):
    # like for like (an allocator's reserved peak against memory_per_gpu less the CUDA context); the
    # spread of repeated measurements is 10-20%
    errors = [abs(record["error"]) for record in sections["run_memory"]["records"]]
    assert len(errors) >= 20
    assert statistics.median(errors) <= 0.12
    assert max(errors) <= 0.35


def test_peak_memory_median_meets_the_target(sections):
    memory = [abs(r["tensor_error"]) for r in sections["measured"]["records"]
              if r["fidelity"] in ("as run", "approx") and r.get("tensor_error") is not None]
    runs = [abs(r["error"]) for r in sections["run_memory"]["records"]]
    assert statistics.median(memory + runs) <= 0.08


def test_shipped_time_constants_are_the_fit_to_the_training_sources(sections):
    step = sections["step_time"]
    for name, shipped in step["shipped"].items():
        assert step["refit"][name] == pytest.approx(shipped, rel=0.01, abs=1e-9), name


def test_step_time_on_sources_the_constants_never_saw(sections):
    # Issue 9's targets: leave-one-source-out median |error| <= 12% across single-GPU, one-node and
    # multi-node runs; the held-out sources with the shipped constants stay within it as well.
    step = sections["step_time"]
    assert step["sources"] >= 4
    assert step["held_out_median"] <= 0.12
    scales = {record["scale"] for record in step["records"]}
    assert scales == {"single GPU", "one node", "several nodes"}


def test_leave_one_source_out_median_meets_the_target(sections):
    assert sections["step_time"]["loso_median"] <= 0.12


def test_step_time_beats_a_fixed_efficiency_calculator(sections):
    # llm-analysis at the best fixed efficiency for these very runs (chosen after seeing them) against
    # tplan with constants fitted without each run's own source.
    baseline = sections["step_time"]["baseline"]
    assert baseline["tplan_median"] < baseline["best_median"]


def test_one_cluster_calibrated_on_half_predicts_the_rest(sections):
    errors = sorted(abs(error) for error in sections["step_time"]["cluster"])
    assert errors[len(errors) // 2] <= 0.05


# ---------------------------------------------------------------- docs/accuracy.md


def test_docs_accuracy_is_up_to_date(sections, capsys):
    assert accuracy.main(["--check"]) == 0, "docs/accuracy.md is stale: run python scripts/accuracy.py"
    assert capsys.readouterr().out.startswith("accuracy: ")


def test_check_fails_on_a_stale_file(sections, tmp_path, capsys):
    stale = tmp_path / "accuracy.md"
    stale.write_text(accuracy.DOC.read_text().replace("| ZeRO-1, P_os |", "| ZeRO-1 |"))
    assert accuracy.main(["--check", "--output", str(stale)]) == 1
    assert accuracy.main(["--check", "--output", str(tmp_path / "missing.md")]) == 1


# ---------------------------------------------------------------- fp8


def test_fp8_speeds_up_the_linear_layers_only(sections):
    # The float8 + FSDP2 runs measured 1.28x (8B) and 1.50x (70B); crediting fp8 for the whole step
    # would give 2x. tplan's compute ratio must stay strictly between, near the measurement.
    for record in sections["fp8"]["records"]:
        assert 1 < record["tplan"] < 2, record
        assert abs(record["error"]) <= 0.25, record
    small, large = sections["fp8"]["records"]
    assert small["tplan"] < large["tplan"], "bigger matmuls gain more from fp8, as measured"


def test_rowwise_fp8_is_as_much_slower_as_a_source_it_was_not_set_from(sections):
    # torchao's README sets the rowwise GEMM rate; the torchtitan commit's log was not used. Both
    # measured tensorwise > rowwise > bf16 on the same run.
    records = sections["fp8_recipes"]["records"]
    held = [r for r in records if r["use"] == "held out"]
    assert held and all(abs(r["error"]) <= 0.05 for r in held), held
    assert all(r["tplan"] > 1 for r in records), "each recipe's order as measured"
