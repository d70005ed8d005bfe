"""Read the files an engine runs back into a tplan config: which engine wrote a file, the knobs and
settings it and its companions pin (a DeepSpeed JSON and the Trainer arguments naming it, an
accelerate config and the arguments beside it), and the goal that supplies the rest (--goal, or
NAME.tplan.yaml beside the file)."""

from __future__ import annotations

from pathlib import Path

from ..catalog import find_model
from ..errors import InputError
from ..goal import Problem, load_problem
from ..load import Document, read
from . import accelerate, axolotl, deepspeed, huggingface, side_name, torchtitan, torchtune
from .fields import Fields

def engine_of(document: Document) -> str | None:
    """The engine whose config this is, or None for a tplan goal or config."""
    data = document.data
    if not isinstance(data, dict) or "hardware" in data or "knobs" in data:
        return None
    if document.path.endswith(".toml"):  # a torchtitan job config, not pyproject.toml or another tool's
        return "torchtitan" if {"training", "parallelism"} & set(data) and "project" not in data else None
    if torchtune.is_recipe(data):
        return "torchtune"
    if "base_model" in data:
        return "axolotl"
    if "distributed_type" in data or "compute_environment" in data:
        return "accelerate"
    if {"train_micro_batch_size_per_gpu", "train_batch_size", "zero_optimization"} & set(data):
        return "deepspeed"
    if huggingface.is_arguments(data):
        return "hf"
    return None


def reading(document: Document, engine: str, goal_knobs: dict,
            arguments: Document | None = None) -> tuple[dict, dict, list[str]]:
    """(knobs, goal settings, the other files of the run read) of an engine's config and its
    companions; ``arguments`` are the Trainer arguments that name a DeepSpeed JSON (see naming),
    ``goal_knobs`` (the goal's one value of each) stand in for a lone DeepSpeed JSON's "auto" values."""
    if engine == "deepspeed":
        if arguments is not None:  # the Trainer arguments that name this JSON own its "auto" values
            knobs, settings, companions = reading(arguments, engine_of(arguments), goal_knobs)
            return knobs, settings, [arguments.path, *companions]
        return deepspeed.knobs(Fields(document, deepspeed.auto_values(goal_knobs))), {"framework": "deepspeed"}, []
    if engine in ("hf", "axolotl"):
        module = huggingface if engine == "hf" else axolotl
        fields = Fields(document)
        knobs, settings = module.knobs(fields)
        companions = []
        if fields.raw(("deepspeed",)):
            companion = _companion(document, fields, ("deepspeed",))
            knobs = _merged(deepspeed.knobs(Fields(companion, deepspeed.auto_values(knobs))), knobs)
            settings["framework"], companions = "deepspeed", [companion.path]
        return knobs, settings, companions
    if engine == "accelerate":
        fields = Fields(document)
        knobs, settings = accelerate.knobs(fields)
        beside = _arguments_beside(document)
        arguments, argument_settings = huggingface.knobs(Fields(beside)) if beside else ({}, {})
        layers, companions = [arguments, knobs], [beside.path] if beside else []
        if fields.text(("deepspeed_config", "deepspeed_config_file")):
            companion = _companion(document, fields, ("deepspeed_config", "deepspeed_config_file"))
            layers.insert(1, deepspeed.knobs(Fields(companion, deepspeed.auto_values(arguments))))
            companions.append(companion.path)
        return _merged(*layers), {**argument_settings, **settings}, companions
    module = torchtitan if engine == "torchtitan" else torchtune
    knobs, settings = module.knobs(Fields(document))
    return knobs, settings, []


def _merged(*layers: dict) -> dict:
    """Knobs read from several files of one run, later files winning; bf16 weights (bf16-pure, what
    the Trainer arguments load) stay pure under a launcher's plain bf16."""
    merged = {}
    for layer in layers:
        pure = merged.get("precision") == "bf16-pure" and layer.get("precision") == "bf16"
        merged.update(layer)
        if pure:
            merged["precision"] = "bf16-pure"
    return merged


def _companion(document: Document, fields: Fields, key_path: tuple) -> Document:
    """The file a config names (relative to its folder, as the launch scripts tplan writes run there),
    or the DeepSpeed config written inline under that key."""
    if isinstance(fields.raw(key_path), dict):
        return Document(document.path, fields.raw(key_path),
                        {key[len(key_path):]: line for key, line in document.lines.items() if key[:len(key_path)] == key_path})
    path = Path(document.path).parent / fields.text(key_path)
    if not path.is_file():
        raise fields.error(key_path, f"a file that exists ({path} does not)")
    return read(path)


def _siblings(document: Document):
    folder = Path(document.path).parent
    for path in sorted(folder.iterdir()) if document.path != "<stdin>" else ():
        if path.suffix in (".json", ".yaml", ".yml") and path.is_file() and str(path) != document.path:
            try:
                yield read(path)
            except InputError:
                continue


def naming(document: Document) -> Document | None:
    """Trainer arguments or an axolotl config beside a DeepSpeed JSON that name it."""
    own = Path(document.path).resolve()
    for sibling in _siblings(document):
        data = sibling.data
        if isinstance(data, dict) and engine_of(sibling) in ("hf", "axolotl") and isinstance(data.get("deepspeed"), str) \
                and (Path(sibling.path).parent / data["deepspeed"]).resolve() == own:
            return sibling
    return None


def _arguments_beside(document: Document) -> Document | None:
    """The one Trainer arguments file beside an accelerate config (the pair tplan writes)."""
    found = [sibling for sibling in _siblings(document) if engine_of(sibling) == "hf"]
    return found[0] if len(found) == 1 else None


def implied_gpus(knobs: dict, goal_knobs: dict) -> dict:
    """A data-parallel degree read from a file, as the GPUs it takes with the other degrees."""
    knobs = {name: value for name, value in knobs.items() if value is not None}
    dp = knobs.pop("dp", None)
    if dp is not None and "gpus" not in knobs:
        degrees = 1
        for name in ("tp", "pp", "cp"):
            value = knobs.get(name, goal_knobs.get(name, 1))
            degrees *= value if isinstance(value, int) else 1
        knobs["gpus"] = dp * degrees
    return knobs


def engine_problem(document: Document, goal: Document | None, rules: tuple) -> Problem:
    """The config an engine's file (with its companions) describes, on the goal's hardware and data:
    ``goal``, or else NAME.tplan.yaml beside the file (or beside the Trainer arguments that name a
    DeepSpeed JSON)."""
    engine = engine_of(document)
    arguments = naming(document) if engine == "deepspeed" else None
    if goal is None:
        sides = [Path(side_name(path)) for path in (document.path, *([arguments.path] if arguments else []))]
        goal = next((read(side) for side in sides if side.is_file()), None)
    if goal is None:
        raise InputError(document.path, "", f"--goal GOAL.yaml or {Path(side_name(document.path)).name} beside it, "
                                            f"naming the hardware and data (and the model, where the file names "
                                            f"none) that a {engine} config does not carry")
    knobs, settings, _ = reading(document, engine, _single_values(goal), arguments)
    goal = _with_settings(goal, settings, document)
    if goal.data.get("framework", "deepspeed") == "deepspeed" and knobs.get("precision") == "bf16-pure" and \
            (knobs.get("zero_stage", 0) > 0 or knobs.get("offload", "none") != "none"):
        knobs["precision"] = "bf16"  # DeepSpeed's ZeRO optimizers keep fp32 master weights whatever the model's dtype
    return load_problem(goal, pinned=True, extra_rules=rules, knobs=implied_gpus(knobs, goal.data.get("knobs") or {}),
                        knobs_file=document.path)


def _single_values(goal: Document) -> dict:
    """The goal's knobs that have one value."""
    knobs = goal.data.get("knobs") if isinstance(goal.data, dict) else None
    if not isinstance(knobs, dict):
        return {}
    return {name: value for name, value in knobs.items() if not isinstance(value, list)}


def _with_settings(goal: Document, settings: dict, engine_file: Document) -> Document:
    """The goal with what an engine's file says of the run (its model, framework, loss ...)."""
    data = dict(goal.data) if isinstance(goal.data, dict) else {}
    for key, value in settings.items():
        if key == "model" and value is not None:
            value = _engine_model(value, engine_file, data.get("model"))
        if value is not None:
            data[key] = value
    return Document(goal.path, data, goal.lines)


def _engine_model(name: str, engine_file: Document, goal_model):
    """The model an engine loads: a local folder's config.json, a catalog model, or (a path tplan
    cannot read) the goal's model."""
    folder = Path(engine_file.path).parent / name
    if (folder / "config.json").is_file():
        return {"hf_config": str((folder / "config.json").resolve()), "hf_id": name}
    try:
        find_model(name, engine_file.path, "model")
        return name
    except InputError:
        if goal_model is not None:
            return None
        raise
