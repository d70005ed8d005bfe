"""The numbers of a plan that every engine's files state, computed once so that they agree."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import catalog
from ..errors import InputError
from ..evaluate import Assessment
from ..goal import Problem


@dataclass(frozen=True)
class Run:
    """A plan as an engine runs it: batch, parallelism, precision, schedule and the model to load."""

    problem: Problem
    config: dict            # the plan's knobs
    dp: int                 # data-parallel degree (replicas x shards)
    nodes: int
    per_node: int           # GPUs used on each node
    steps: int              # optimizer steps
    warmup_steps: int
    learning_rate: float
    clipping: float

    @classmethod
    def of(cls, problem: Problem, plan: Assessment) -> Run:
        config, values = plan.config, plan.values
        per_node = min(config["gpus"], int(problem.inputs["hardware.gpus_per_node"]))
        steps = max(1, math.ceil(values["steps"] - 1e-9))
        return cls(problem, dict(config), round(values["dp"]), math.ceil(config["gpus"] / per_node), per_node,
                   steps, max(1, math.ceil(values["warmup_ratio"] * steps)), values["learning_rate"],
                   values["gradient_clipping"])

    def __getitem__(self, knob: str):
        return self.config[knob]

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step."""
        return self["micro_batch"] * self["grad_accum"] * self.dp

    @property
    def weight_decay(self) -> float:
        """Decoupled weight decay: the Llama/GPT-3 recipes' 0.1 (Touvron et al. 2023, sec. 2.2); none
        for SGD and Adafactor."""
        return 0.0 if self["optimizer"] in ("sgd", "adafactor") else 0.1

    @property
    def lora(self) -> bool:
        return self["lora_rank"] > 0

    def model_id(self, target: str) -> str:
        """The Hugging Face id or folder the engine loads."""
        model_id = self.problem.inputs.get("model.hf_id")
        if not model_id:
            raise InputError(self.problem.file, "model", f"a model with a Hugging Face id for --emit {target} "
                                                         f"(add hf_id: the id or local folder the engine loads)")
        return model_id

    def lora_modules(self, target: str) -> list[str]:
        """The architecture's module names for the goal's LoRA targets (fused modules named once)."""
        model_type = self.problem.inputs.get("model.model_type")
        names = catalog.lora_modules(model_type)
        if names is None:
            raise InputError(self.problem.file, "model", f"a transformers model family whose LoRA module names "
                                                         f"tplan knows for --emit {target} (model_type "
                                                         f"{model_type or 'unknown'}; add model_type to the model)")
        targets = [names[target_name] for target_name in self.problem.lora_targets if target_name in names]
        return list(dict.fromkeys(targets))
