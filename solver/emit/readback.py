"""Read the files an engine runs back into a tplan config: which engine wrote a file, the knobs and
settings it and its companions pin (a DeepSpeed JSON and the Trainer arguments naming it, an
accelerate config and the arguments beside it), and the goal that supplies the rest (--goal, or
NAME.tplan.yaml beside the file)."""

from __future__ import annotations

from pathlib import Path

from .. import catalog
from ..catalog import find_model
from ..errors import InputError
from ..goal import Problem, load_problem
from ..load import Document, read
from . import accelerate, axolotl, deepspeed, huggingface, side_name, torchtitan, torchtune
from .fields import Fields

# where each engine's config names its DeepSpeed JSON (a path from the config's folder)
DEEPSPEED_KEYS = {"hf": ("deepspeed",), "axolotl": ("deepspeed",), "accelerate": ("deepspeed_config", "deepspeed_config_file")}

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


def reading(document: Document, engine: str, goal_knobs: dict) -> tuple[dict, dict, list[str]]:
    """(knobs, goal settings, the other files of the run read) of an engine's config and the files it
    names or launches (see owner); ``goal_knobs`` (the goal's one value of each) stand in for a lone
    DeepSpeed JSON's "auto" values."""
    if engine == "deepspeed":
        return deepspeed.knobs(Fields(document, deepspeed.auto_values(goal_knobs))), {"framework": "deepspeed"}, []
    if engine in ("hf", "axolotl"):
        module = huggingface if engine == "hf" else axolotl
        fields = Fields(document)
        knobs, settings = module.knobs(fields)
        companions = []
        if fields.raw(DEEPSPEED_KEYS[engine]):
            companion = _companion(document, fields, DEEPSPEED_KEYS[engine])
            knobs = _merged(deepspeed.knobs(Fields(companion, deepspeed.auto_values(knobs))), knobs)
            settings["framework"], companions = "deepspeed", [companion.path]
        return knobs, settings, companions
    if engine == "accelerate":
        fields = Fields(document)
        knobs, settings = accelerate.knobs(fields)
        beside = _arguments_beside(document)
        arguments, argument_settings = huggingface.knobs(Fields(beside)) if beside else ({}, {})
        layers, companions = [arguments, knobs], [beside.path] if beside else []
        if fields.text(DEEPSPEED_KEYS[engine]):
            companion = _companion(document, fields, DEEPSPEED_KEYS[engine])
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


def _siblings(document: Document, folder: Path | None = None):
    """The YAML and JSON files tplan can read in ``folder`` (the document's own by default)."""
    folder = folder or Path(document.path).parent
    for path in sorted(folder.iterdir()) if document.path != "<stdin>" else ():
        if path.suffix in (".json", ".yaml", ".yml") and path.is_file() and str(path) != document.path:
            try:
                yield read(path)
            except InputError:
                continue


def owner(document: Document) -> Document | None:
    """The file that runs ``document`` as part of its run: for a DeepSpeed JSON, the Trainer arguments,
    axolotl or accelerate config that names it (in its folder, or the folder above, where axolotl's
    examples keep deepspeed_configs/); for Trainer arguments, the accelerate config beside them
    that launches them (the pair tplan writes). None for a file that runs on its own."""
    engine = engine_of(document)
    if engine == "deepspeed" and document.path != "<stdin>":
        own = Path(document.path).resolve()
        folder = own.parent
        for candidate in [*_siblings(document), *_siblings(document, folder.parent)]:
            if own in _named_deepspeed(candidate):
                return candidate
    if engine == "hf":  # the accelerate config beside runs the one Trainer arguments file there (_arguments_beside)
        siblings = list(_siblings(document))
        if not any(engine_of(sibling) == "hf" for sibling in siblings):
            return next((sibling for sibling in siblings if engine_of(sibling) == "accelerate"), None)
    return None


def _named_deepspeed(document: Document) -> list[Path]:
    """The DeepSpeed JSON a Trainer arguments, axolotl or accelerate config names, if any."""
    key_path, named = DEEPSPEED_KEYS.get(engine_of(document), ()), None
    if key_path:
        named = document.data
        for key in key_path:  # read as it is: a sibling may be malformed, and is then no owner
            named = named.get(key) if isinstance(named, dict) else None
    return [(Path(document.path).parent / named).resolve()] if isinstance(named, str) else []


def _arguments_beside(document: Document) -> Document | None:
    """The one Trainer arguments file beside an accelerate config (the pair tplan writes)."""
    found = [sibling for sibling in _siblings(document) if engine_of(sibling) == "hf"]
    return found[0] if len(found) == 1 else None


def _run_files(document: Document) -> list[Document]:
    """``document`` and the files that run it, each the owner of the one before (at most three:
    a DeepSpeed JSON, the Trainer arguments naming it, the accelerate config launching them)."""
    files = [document]
    while len(files) < 3 and (found := owner(files[-1])) is not None:
        files.append(found)
    return files


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
    """The config an engine's file describes with the files of its run (read from the one that runs
    the others: see owner), on the goal's hardware and data: ``goal``, or else NAME.tplan.yaml
    beside any file of the run."""
    files = _run_files(document)
    head = files[-1]
    engine = engine_of(head)
    if goal is None:
        goal = next((read(side) for side in (Path(side_name(member.path)) for member in files) if side.is_file()), None)
    if goal is None:
        raise InputError(document.path, "", f"a goal (--goal GOAL.yaml; goal= in the Python API) or "
                                            f"{Path(side_name(document.path)).name} beside it, "
                                            f"naming the hardware and data (and the model, where the file names "
                                            f"none) that a {engine} config does not carry")
    knobs, settings, _ = reading(head, engine, _single_values(goal))
    goal = _with_settings(goal, settings, head)
    if goal.data.get("framework", "deepspeed") == "deepspeed" and knobs.get("precision") == "bf16-pure" and \
            (knobs.get("zero_stage", 0) > 0 or knobs.get("offload", "none") != "none"):
        knobs["precision"] = "bf16"  # DeepSpeed's ZeRO optimizers keep fp32 master weights whatever the model's dtype
    return load_problem(goal, pinned=True, extra_rules=rules, knobs=implied_gpus(knobs, goal.data.get("knobs") or {}),
                        knobs_file=head.path)


def _single_values(goal: Document) -> dict:
    """The goal's knobs that have one value."""
    knobs = goal.data.get("knobs") if isinstance(goal.data, dict) else None
    if not isinstance(knobs, dict):
        return {}
    return {name: value for name, value in knobs.items() if not isinstance(value, list)}


def _with_settings(goal: Document, settings: dict, engine_file: Document) -> Document:
    """The goal with what an engine's file says of the run (its model, framework, loss ...; the
    LoRA modules it adapts as tplan's targets of the model's family)."""
    data = dict(goal.data) if isinstance(goal.data, dict) else {}
    modules = settings.pop("lora_modules", None)
    for key, value in settings.items():
        if key == "model" and value is not None:
            value = _engine_model(value, engine_file, data.get("model"))
        if value is not None:
            data[key] = value
    if modules:
        model_type = _model_type(data.get("model"), Path(goal.path).parent, engine_file)
        data["lora_targets"] = _lora_targets(modules, model_type, engine_file)
    return Document(goal.path, data, goal.lines)


def _lora_targets(modules: list[str], model_type: str | None, engine_file: Document) -> list[str]:
    """tplan's LoRA targets (q, k, ... down) for the module names a file adapts, by the model's family
    (PEFT matches a name against the end of each module's path: GPT-2's c_proj is both o and down)."""
    if modules == ["all-linear"]:
        return list(catalog.LORA_TARGETS)
    if modules == [huggingface.PEFT_DEFAULT]:
        modules = catalog.peft_default_modules(model_type)
        if modules is None:
            raise InputError(engine_file.path, "lora_target_modules", f"the modules to adapt (PEFT has no default "
                                                                      f"for the {model_type or 'model'} family)")
    names = catalog.lora_modules(model_type) or {}

    def adapts(module: str) -> set[str]:
        return {target for target, name in names.items() if name == module or name.endswith("." + module)}
    targets = [target for target in catalog.LORA_TARGETS if any(target in adapts(module) for module in modules)]
    unknown = [module for module in modules if not adapts(module)]
    if unknown or not targets:
        raise InputError(engine_file.path, "lora_target_modules",
                         f"module names of the {model_type or 'model'} family tplan knows "
                         f"({', '.join(dict.fromkeys(names.values())) or 'none'}), not {', '.join(unknown or modules)}")
    return targets


def _model_type(model, goal_folder: Path, engine_file: Document) -> str | None:
    """config.json's model_type of a goal's model: a catalog model's, an hf_config's (a path from the
    goal's folder), a shape's."""
    if isinstance(model, str):
        return find_model(model, engine_file.path, "model").get("model_type")
    if isinstance(model, dict) and "hf_config" in model:
        config = read(goal_folder / model["hf_config"]).data
        return config.get("model_type") if isinstance(config, dict) else None
    return model.get("model_type") if isinstance(model, dict) else None


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
