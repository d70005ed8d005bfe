"""Emit: a plan as the files each training engine runs, and those files read back for `tplan check`.

One module per engine, each owning its format both ways (files(run) writes, knobs(fields) reads):
deepspeed (DeepSpeed JSON), huggingface (TrainingArguments / TRL SFT config), accelerate,
torchtitan, axolotl, and torchtune (read only). A target runs only part of tplan's space (no
pipeline parallelism in a Hugging Face Trainer, no LoRA in torchtitan): `restrict` narrows a goal to
it before the search, so the plan written is the best plan the engine can run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import InputError
from ..evaluate import Assessment
from ..goal import Problem, changed
from . import accelerate, axolotl, deepspeed, huggingface, torchtitan
from .run import Run

NOT_FP8 = ("fp32", "fp16", "bf16", "bf16-pure")
LOSSES = ("standard", "compiled", "chunked", "fused")


@dataclass(frozen=True)
class Target:
    """An engine: the frameworks whose memory it keeps, the knob values it can run, its files."""

    main: str           # the file `tplan check` reads back (NAME.tplan.yaml beside it: what it does not carry)
    frameworks: tuple
    runs: object        # knob -> the values this engine can run (other knobs: any), or Problem -> that
    files: object       # Run -> {file name: text, or a dict/list written as JSON, YAML or TOML by suffix}
    loads_transformers: bool = True     # the engine loads the model with transformers (by its model_type)
    losses: tuple = ("standard", "fused")  # the goal's loss kinds it runs (fused: Liger's kernels)


TARGETS = {  # what each writes and runs: docs/engines.md
    "deepspeed": Target("ds_config.json", ("deepspeed",),
                        {"tp": (1,), "pp": (1,), "cp": (1,), "vp": (1,), "precision": ("fp32", "fp16", "bf16")},
                        deepspeed.files, loads_transformers=False, losses=LOSSES),  # the script's own loss
    "hf": Target(huggingface.CONFIG_FILE, ("deepspeed",), {**huggingface.TRAINER_RUNS, "precision": NOT_FP8},
                 huggingface.files),
    "accelerate": Target(accelerate.CONFIG_FILE, ("deepspeed", "fsdp"), accelerate.runs, accelerate.files),
    "torchtitan": Target(torchtitan.CONFIG_FILE, ("fsdp",), torchtitan.runs, torchtitan.files, loads_transformers=False,
                         losses=("standard", "compiled")),
    "axolotl": Target(axolotl.CONFIG_FILE, ("deepspeed", "fsdp"), {**huggingface.TRAINER_RUNS, "precision": NOT_FP8},
                      axolotl.files),
}


def restrict(problem: Problem, names: list[str]) -> list[str]:
    """Narrow ``problem``'s knob domains to what every named target runs; the notes say what was
    narrowed. A goal that needs what a target cannot run is bad input naming the knob."""
    notes = []
    for name in names:
        target = TARGETS[name]
        framework = problem.inputs["framework"]
        if framework not in target.frameworks:
            raise InputError(problem.file, "framework", f"framework {' or '.join(target.frameworks)} to write "
                             f"{name}'s files (this goal plans {framework}'s memory, sharding and rules)")
        if target.loads_transformers and not problem.inputs.get("model.model_type"):
            raise InputError(problem.file, "model", f"a model transformers loads for {name}'s files "
                             f"({problem.model_name} has no config.json model_type: give the model's hf_config, "
                             f"or model_type in its shape)")
        if problem.inputs["loss"] not in target.losses:
            raise InputError(problem.file, "loss", f"loss {' or '.join(target.losses)} to write {name}'s files "
                                                   f"({name} does not run the {problem.inputs['loss']} loss this goal plans)")
        notes += narrow(problem, target.runs(problem) if callable(target.runs) else target.runs, f"{name}'s files")
    return notes


def narrow(problem: Problem, runs: dict, purpose: str) -> list[str]:
    """Keep in each knob's domain the values ``runs`` lists (for ``purpose``, named in the error when
    none is left); the notes say what was narrowed."""
    notes = []
    for knob, runnable in runs.items():
        problem.runnable[knob] = tuple(value for value in problem.runnable.get(knob, runnable) if value in runnable)
        domain = problem.domains[knob]
        kept = tuple(value for value in domain if value in runnable)
        if not kept:
            raise InputError(problem.file, f"knobs.{knob}", f"a value of {', '.join(map(_shown, runnable))} to "
                             f"write {purpose}, not only {', '.join(map(_shown, domain))}")
        if kept != domain:
            notes.append(f"{knob} {'/'.join(map(_shown, kept))}")
            problem.domains[knob] = kept
    return notes


def _shown(value) -> str:
    """A knob value as a goal writes it (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def files(problem: Problem, plan: Assessment, names: list[str], folder: str) -> dict[str, str]:
    """{path: text} of every named target's files, each target in its own folder under ``folder``,
    with the side file NAME.tplan.yaml beside its main file."""
    run = Run.of(problem, plan)
    written = {}
    for name in names:
        target, place = TARGETS[name], Path(folder) / name
        contents = {**target.files(run), side_name(target.main): side_file(run, place)}
        written.update({str(place / file_name): text(file_name, content) for file_name, content in contents.items()})
    return written


def side_name(main: str) -> str:
    """NAME.tplan.yaml for an engine's NAME.json/.yaml/.toml: the file `tplan check` reads beside it."""
    return str(Path(main).with_suffix(".tplan.yaml"))


def side_file(run: Run, place: Path) -> str:
    """What an engine's files do not carry (model, data, hardware, the framework; the GPU count a
    Trainer's arguments leave to the launcher), as a tplan config: `tplan check` reads it beside them.
    Paths in the goal are rewritten relative to ``place``."""
    problem = run.problem
    data = changed(problem.document, problem.inputs["gpu.id"], {}).data
    goal_folder = Path(problem.document.path).parent
    data = {key: value for key, value in data.items() if key not in ("objective", "stages")}
    if isinstance(data["model"], dict) and "hf_config" in data["model"]:
        data["model"] = {**data["model"], "hf_config": _moved(goal_folder / data["model"]["hf_config"], place)}
    if data.get("rules"):
        data["rules"] = [_moved(goal_folder / pack, place) for pack in data["rules"]]
    data["knobs"] = {knob: run.config[knob] for knob in problem.rules.knobs}
    return ("# Written by tplan: the model, data and hardware the engine's files beside this one do not\n"
            "# carry, and the plan's knobs; `tplan check` reads it with them (their values win).\n"
            + yaml.safe_dump(data, sort_keys=False))


def _moved(path: Path, place: Path) -> str:
    return os.path.relpath(path.resolve(), place.resolve())


def text(file_name: str, content) -> str:
    """A file's text: strings as they are, data as JSON, YAML or TOML by the file's suffix."""
    if isinstance(content, str):
        return content
    if file_name.endswith(".json"):
        return json.dumps(content, indent=2) + "\n"
    if file_name.endswith(".toml"):
        return torchtitan.toml(content)
    return yaml.safe_dump(content, sort_keys=False)
