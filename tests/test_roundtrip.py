"""Round trip: every file tplan writes for an engine (the DeepSpeed JSON, Trainer arguments and accelerate
config of one run each on its own), read back by `tplan check` with the side file of its run, is the
same configuration with the same estimate - over random plans of every kind."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tplan import api, emit
from tplan.errors import InputError
from tplan.explain import answer
from tplan.goal import load_problem
from tplan.load import from_data
from tplan.write import write_all

MODELS = ["llama-3.2-1b", "qwen2.5-7b", "gpt2", "phi-3-mini", "mistral-7b-v0.1", "meta-llama/Llama-3.1-8B-Instruct",
          "qwen3-0.6b", "llama-3.1-8b"]


@st.composite
def plans(draw):
    """A goal with every knob pinned: fine-tunes (LoRA, QLoRA, offload) and pretrains (tp, pp, cp,
    fp8) on one or several nodes, under DeepSpeed or FSDP."""
    framework = draw(st.sampled_from(["deepspeed", "fsdp"]))
    lora = draw(st.sampled_from([0, 0, 8, 64]))
    quantization = draw(st.sampled_from(["none", "nf4", "int8"])) if lora else "none"
    per_node, nodes = draw(st.sampled_from([1, 2, 4, 8])), draw(st.sampled_from([1, 1, 2, 4]))
    degrees = [1, 2] if per_node > 1 else [1]
    tp, pp, cp = (draw(st.sampled_from(degrees)) for _ in range(3))
    gpus = per_node * nodes
    knobs = {"precision": draw(st.sampled_from(["bf16", "fp16", "fp32", "fp8", "bf16-pure"])),
             "optimizer": draw(st.sampled_from(["adamw", "adamw-8bit", "paged-adamw-8bit", "sgd"])),
             "micro_batch": draw(st.sampled_from([1, 2, 4])), "grad_accum": draw(st.sampled_from([1, 2, 8])),
             "context": draw(st.sampled_from([512, 2048, 4096])),
             "zero_stage": draw(st.sampled_from([0, 1, 2, 3] if framework == "deepspeed" else [2, 3])),
             "offload": draw(st.sampled_from(["none", "optimizer", "full"] if framework == "deepspeed"
                                             else ["none", "full"])),
             "grad_checkpointing": draw(st.sampled_from([False, True, "selective"])),
             "lora_rank": lora, "quantization": quantization, "gpus": gpus,
             "tp": tp, "pp": pp, "cp": cp, "vp": draw(st.sampled_from([1, 2])) if pp > 1 else 1}
    if gpus % (tp * pp * cp):
        knobs.update(tp=1, pp=1, cp=1, vp=1)
    model, loss, attention = draw(st.sampled_from(MODELS)), draw(st.sampled_from(["standard", "fused"])), \
        draw(st.sampled_from(["flash", "eager"]))
    if draw(st.booleans()):  # a pretrain torchtitan runs: its models, FSDP, AdamW, no adapters
        loss = draw(st.sampled_from(["standard", "compiled"]))   # torchtitan compiles its loss on request
        framework, model, attention = "fsdp", draw(st.sampled_from(["qwen3-0.6b", "llama-3.1-8b"])), "flash"
        knobs.update(lora_rank=0, quantization="none", optimizer="adamw",
                     precision=draw(st.sampled_from(["bf16", "fp8", "fp32"])),
                     zero_stage=draw(st.sampled_from([0, 2, 3])), offload=draw(st.sampled_from(["none", "full"])))
    recipe = draw(st.sampled_from(["tensorwise", "rowwise"])) if framework == "fsdp" else "tensorwise"
    all_gather = framework == "fsdp" and recipe == "tensorwise" and draw(st.booleans())  # torchao: tensorwise only
    return {"model": model, "task": "finetune" if lora else draw(st.sampled_from(
                ["finetune", "pretrain"])), "framework": framework, "data": {"tokens": 2e8},
            "hardware": {"gpu": draw(st.sampled_from(["h100-sxm", "a100-80gb"])), "gpus_per_node": per_node,
                         "nodes": nodes},
            "compile": draw(st.booleans()) if framework == "fsdp" else False, "loss": loss, "attention": attention,
            "fp8_recipe": recipe, "fp8_all_gather": all_gather, "knobs": knobs}


# rules a plan may break and still be a plan someone writes (it does not fit, or is too slow); the
# others say a combination does not exist (offload without ZeRO, pipelines under ZeRO-3 ...)
SIZING_RULES = {"fits-gpu-memory", "fits-cpu-memory", "meets-deadline", "within-budget", "enough-tokens",
                "global-batch", "warmup-steps", "context-within-model", "adapter-capacity"}


def runnable(name: str, problem) -> bool:
    """Whether an engine runs this pinned plan: `solve --emit` would keep it, not refuse it."""
    try:
        return not emit.restrict(problem, [name])
    except InputError:  # a knob value, framework or model the engine does not run
        return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(goal=plans())
def test_every_engine_file_reads_back_as_the_plan_and_its_estimate(goal):
    problem = load_problem(from_data(goal, "<goal>"), pinned=True)
    assessment = problem.evaluator().assess({knob: values[0] for knob, values in problem.domains.items()})
    assume(all(violation.rule.split("/")[-1] in SIZING_RULES for violation in assessment.violations))
    expected = answer(problem, "pass" if assessment.passes else "fail", assessment)
    with tempfile.TemporaryDirectory() as folder:
        for name in (name for name in emit.TARGETS if runnable(name, problem)):
            files = emit.files(problem, assessment, [name], folder)
            Path(folder, name).mkdir()
            write_all(files)
            for path in (Path(path) for path in files if not path.endswith(".tplan.yaml")):
                if path.suffix not in (".json", ".yaml", ".toml"):
                    continue  # launch.sh, hostfile
                checked = api.check(path)  # the side file is beside the target's main file, not every file
                assert checked.config == expected["config"], path.name
                assert checked.estimate == expected["estimate"], path.name
                assert checked.status == expected["status"], path.name
