"""llm-analysis (PyPI `llm-analysis`, github.com/cli99/llm-analysis) on measured runs: a baseline for tplan.

Reads measurement files (data/measured/*.yaml; schemas/measurements.schema.json) and, for
each run, asks llm-analysis's `LLMAnalysis(...).training(...)` for the step latency, once at its default
efficiencies and once at each fixed FLOPs efficiency in EFFICIENCIES. It writes, per run id, the
predicted tokens/s per GPU for every setting (null, with a reason, where llm-analysis cannot express
the run). Only `tplan.catalog` is used from tplan, for model and GPU shapes; everything else is
llm-analysis's own model.

llm-analysis pins old transformers/huggingface-hub, so it lives in its own virtualenv; tests never
import this file:
    python3 -m venv .llmavenv
    .llmavenv/bin/pip install llm-analysis pyyaml jsonschema
    .llmavenv/bin/pip install -e . --no-deps
    .llmavenv/bin/python scripts/llm_analysis_baseline.py data/measured/*.yaml \
        --output data/baselines/llm_analysis.yaml
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from importlib.metadata import version
from pathlib import Path

import yaml
from llm_analysis import analysis as la
from llm_analysis.config import DtypeConfig, GPUConfig, ModelConfig, ParallelismConfig
from llm_analysis.logger import logger as la_logger

from tplan import catalog, hfconfig

EFFICIENCIES = (0.3, 0.4, 0.5, 0.6)
SIXTEEN_BIT = {"bf16", "fp16", "bf16-pure"}


def shape_of(model, named: dict, where: str, base: Path) -> dict:
    """An explicit shape as given, {hf_config: path} (relative to the file), a name in the file's
    `models:`, or a catalog model."""
    if isinstance(model, dict) and "hf_config" in model:
        return catalog.complete_shape(hfconfig.shape_from_hf_config(str(base / model["hf_config"]), "measurements", where))
    if isinstance(model, dict):
        return catalog.complete_shape(model)
    if model in named:
        return catalog.complete_shape(named[model])
    return catalog.complete_shape(catalog.find_model(model, "measurements", where))


def unsupported(config: dict) -> str | None:
    """Why llm-analysis cannot express a run's settings, or None."""
    precision = config.get("precision", "bf16")
    if precision == "fp8":
        return "fp8: llm-analysis has no fp8 training path (its 8-bit dtypes are int8 weight/activation quantisation)"
    if precision not in SIXTEEN_BIT:
        return f"{precision}: llm-analysis computes GEMMs at 4, 8 or 16 bits only"
    if config.get("lora_rank", 0):
        return "LoRA: llm-analysis models full training only"
    if config.get("quantization", "none") != "none":
        return f"quantization {config['quantization']}: llm-analysis models full training of unquantised weights only"
    if config.get("offload", "none") != "none":
        return f"offload {config['offload']}: llm-analysis does not model CPU offload"
    return None


def caveats_of(shape: dict) -> list[str]:
    """Where llm-analysis accepts the run but its FLOP count does not follow the shape."""
    notes = []
    if shape["gated_mlp"] or shape["ffn_hidden"] != 4 * shape["hidden"]:
        notes.append("MLP FLOPs counted as 16*h^2 per token (non-gated, ffn = 4h); the shape has "
                     f"{'gated ' if shape['gated_mlp'] else ''}ffn {shape['ffn_hidden']}, h {shape['hidden']}")
    if shape["heads"] * shape["head_dim"] != shape["hidden"]:
        notes.append(f"attention assumes head_dim = hidden/heads; the shape has heads*head_dim "
                     f"{shape['heads'] * shape['head_dim']} != hidden {shape['hidden']}")
    if shape["experts"] > 1:
        notes.append("mixture of experts: FLOPs ignore experts and experts_per_token (counted as one dense MLP)")
    return notes


def gpu_count(run: dict) -> int:
    hardware = run["goal"]["hardware"]
    return run["config"].get("gpus") or hardware.get("gpus_per_node", 1) * hardware.get("nodes", 1)


def predict(shape: dict, gpu: dict, run: dict, efficiency: float | None) -> tuple[float, dict]:
    """(tokens/s per GPU, summary) from LLMAnalysis.training; efficiency None = llm-analysis default."""
    config, gpus = run["config"], gpu_count(run)
    tp, pp = config.get("tp", 1), config.get("pp", 1)
    model = ModelConfig(
        name=str(run["id"]), num_layers=shape["layers"], n_head=shape["heads"], hidden_dim=shape["hidden"],
        vocab_size=shape["vocab"], max_seq_len=config["context"], num_key_value_heads=shape["kv_heads"],
        ffn_embed_dim=shape["expert_ffn_hidden"],  # expansion_ratio given too: 0.2.2 asserts ffn % hidden == 0 otherwise
        expansion_ratio=shape["expert_ffn_hidden"] / shape["hidden"],
        moe_num_experts=shape["experts"], moe_top_k=shape["experts_per_token"])
    peak = gpu["peak_tflops"]["fp16" if config.get("precision") == "fp16" else "bf16"]
    parallel = ParallelismConfig(tp_size=tp, pp_size=pp, dp_size=gpus // (tp * pp))
    recompute = {True: "FULL", "selective": "SELECTIVE", False: "NONE"}[config.get("grad_checkpointing", False)]
    # llm-analysis multiplies mem_per_GPU_in_GB by 1024**3. training() asserts micro_batch <= the largest its
    # memory model fits; the latency does not depend on memory, so a run it calls OOM is retried with 1e9 GB.
    for memory_gb in (gpu["memory_gib"], 1e9):
        device = GPUConfig(
            name=gpu["id"], mem_per_GPU_in_GB=memory_gb, hbm_bandwidth_in_GB_per_sec=gpu["memory_bandwidth_gbs"],
            intra_node_bandwidth_in_GB_per_sec=gpu.get("intra_node_gbs") or gpu["pcie_gbs"],
            intra_node_min_message_latency=8e-6,  # llm-analysis's own value for A100/H100
            peak_fp16_TFLOPS=peak, inter_node_bandwidth_in_GB_per_sec=gpu.get("inter_node_gbs") or 200)
        analysis = la.LLMAnalysis(model, device, DtypeConfig(), parallel, flops_efficiency=efficiency)
        try:
            summary = analysis.training(
                batch_size_per_gpu=config["micro_batch"], gradient_accumulation_steps=config.get("grad_accum", 1),
                seq_len=config["context"], activation_recomputation=la.ActivationRecomputation[recompute],
                ds_zero=la.DSZeRO(config.get("zero_stage", 0)),
                flash_attn=run["goal"].get("attention", "flash") != "eager", mlp_gated_linear_units=shape["gated_mlp"],
                master_weights_dtype_bytes=2 if config.get("precision") == "bf16-pure" else 4)
        except AssertionError as error:
            if "max_batch_size_per_gpu" in str(error) and memory_gb != 1e9:
                continue
            raise
        fits = memory_gb != 1e9
        tokens = summary["global_batch_size"] * summary["seq_len"]
        return tokens / summary["latency_per_iter"] / summary["total_num_gpus"], {
            "fits": fits, "max_batch_size_per_gpu": summary["max_batch_size_per_gpu"] if fits else None,
            "flops_per_token": summary["num_flops_total_per_micro_batch"] / (config["micro_batch"] * config["context"])}


def measured_per_gpu(run: dict) -> float | None:
    """The run's measured tokens/s per GPU where its `measured` entry converts without a FLOP formula."""
    measured, config, gpus = run["measured"], run["config"], gpu_count(run)
    if "tokens_per_second_per_gpu" in measured:
        return measured["tokens_per_second_per_gpu"]
    if "tokens_per_second" in measured:
        return measured["tokens_per_second"] / gpus
    if "step_seconds" in measured:
        dp = gpus // (config.get("tp", 1) * config.get("pp", 1))
        return config["micro_batch"] * config.get("grad_accum", 1) * config["context"] * dp / measured["step_seconds"] / gpus
    return None


def run_file(path: Path, settings: dict) -> dict:
    """llm-analysis's predictions for every run of one measurement file, by run id."""
    data = yaml.safe_load(path.read_text())
    named = data.get("models") or {}
    results = {}
    for index, run in enumerate(data["runs"]):
        where = f"runs[{index}] ({run['id']})"
        entry = {"measured_tokens_per_second_per_gpu": measured_per_gpu(run)}
        reason = unsupported(run["config"])
        if reason is None and gpu_count(run) % (run["config"].get("tp", 1) * run["config"].get("pp", 1)):
            reason = "GPU count not divisible by tp * pp"
        if reason is not None:
            results[run["id"]] = {**entry, "tokens_per_second_per_gpu": None, "reason": reason}
            continue
        shape = shape_of(run["goal"]["model"], named, where, path.parent)
        gpu = catalog.find_gpu(run["goal"]["hardware"]["gpu"], "measurements", where)
        predictions, details = {}, {}
        for label, efficiency in settings.items():
            predictions[label], details = predict(shape, gpu, run, efficiency)
            predictions[label] = round(predictions[label], 1)
        entry.update(tokens_per_second_per_gpu=predictions, fits_llm_analysis_memory=details["fits"],
                     llm_analysis_max_micro_batch=details["max_batch_size_per_gpu"],
                     flops_per_token=round(details["flops_per_token"]))
        if caveats_of(shape):
            entry["caveats"] = caveats_of(shape)
        results[run["id"]] = entry
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measurements", nargs="+", help="measurement YAML files (top-level runs: list)")
    parser.add_argument("--output", default="data/baselines/llm_analysis.yaml")
    args = parser.parse_args()
    la_logger.setLevel(logging.ERROR)
    settings = {"default": None, **{f"flops_eff_{e}": e for e in EFFICIENCIES}}
    results = {}
    for path in args.measurements:
        results.update(run_file(Path(path), settings))
    header = {
        "tool": f"llm-analysis {version('llm-analysis')} (PyPI), LLMAnalysis.training(...)['latency_per_iter']",
        "command": "python " + shlex.join(sys.argv),
        "input": args.measurements,
        "settings": {"default": f"flops_efficiency {la.FLOPS_EFFICIENCY}, hbm_memory_efficiency {la.HBM_MEMORY_EFFICIENCY} "
                                "(llm-analysis's defaults, constant.py)",
                     **{f"flops_eff_{e}": f"flops_efficiency {e}" for e in EFFICIENCIES}},
        "prediction": "global_batch_size * seq_len / latency_per_iter / total_num_gpus; in 0.2.2 latency_per_iter = "
                      "grad_accum * (fwd + bwd + recompute FLOPs) / (tp * pp * peak_bf16 * flops_efficiency): "
                      "no communication, pipeline bubble, optimizer step or memory-bound term",
        "hardware": "GPU peak, memory and bandwidths from tplan's rules/catalog/gpus.yaml",
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(yaml.safe_dump({**header, "runs": results}, sort_keys=False, width=110))
    print(f"wrote {output}: {len(results)} runs, "
          f"{sum(r['tokens_per_second_per_gpu'] is None for r in results.values())} not expressible")


if __name__ == "__main__":
    main()
