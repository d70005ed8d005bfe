"""The GPU and model catalogs, parameter counts from architecture, and HF config.json reading."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

from .errors import InputError, nearest, quote
from .load import read

SHAPE_DEFAULTS = {"head_dim": None, "kv_heads": None, "norm": "rmsnorm", "norms_per_layer": 2,
                  "qk_norm": False, "qkv_bias": False, "attn_out_bias": False, "mlp_bias": False,
                  "position_embeddings": 0, "experts": 1, "experts_per_token": 1, "expert_ffn_hidden": None,
                  "shared_expert_ffn_hidden": 0, "shared_expert_gate": False, "dense_layers": 0,
                  "gated_mlp": True, "tied_embeddings": False, "max_context": 0, "dropout": False}
PARAMS_TOLERANCE = 0.03     # an explicit `params` may differ this much from the count of its shape
SHAPE_REQUIRED = ("layers", "hidden", "heads", "ffn_hidden", "vocab")
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


@cache
def _catalog(name: str) -> dict:
    return read(Path(str(resources.files("tplan.rules") / "catalog" / f"{name}.yaml"))).data


def gpus() -> dict[str, dict]:
    return _catalog("gpus")["gpus"]


def models() -> dict[str, dict]:
    return _catalog("models")["models"]


def list_prices() -> dict:
    """The shipped, dated on-demand prices per GPU-hour (rules/catalog/prices.yaml)."""
    return _catalog("prices")


def find_gpu(name: str, file: str, where: str) -> dict:
    entry = gpus().get(str(name).lower())
    if entry is None:
        raise InputError(file, where, f"a GPU from the catalog ({', '.join(sorted(gpus()))}), "
                                      f"not {quote(name)}{nearest(str(name).lower(), gpus())}")
    return {"id": str(name).lower(), **entry}


def find_model(name: str, file: str, where: str) -> dict:
    """A catalog model by id, full Hugging Face id, or alias; case-insensitive. A fine-tuned release
    (-Instruct, -Chat, -it) is its base model's architecture."""
    wanted = str(name).lower()
    aliases = {alias.lower(): target for alias, target in (_catalog("models").get("aliases") or {}).items()}
    index = {**{entry.get("hf_id", "").lower().split("/")[-1]: key for key, entry in models().items()},
             **{entry.get("hf_id", "").lower(): key for key, entry in models().items()},
             **{key: key for key in models()}, **aliases}
    key = next((index[variant] for variant in _base_names(wanted) if variant in index), None)
    if key is None:
        raise InputError(file, where, f"a model from the catalog (see `tplan catalog models`), a "
                                      f"{{hf_config: path}} or an explicit shape, not {quote(name)}"
                                      f"{nearest(wanted, index, means=index)}")
    return {"id": key, **models()[key]}


FINE_TUNE_SUFFIX = re.compile(r"-(instruct|chat|it)(?=-|$)")  # Llama-3.1-8B-Instruct, gemma-2-2b-it
BASE_SUFFIX = re.compile(r"-base$")      # Qwen3-8B-Base: the pretrained weights of the same architecture
META_PREFIX = re.compile(r"^meta-(?=llama)")  # Meta-Llama-3.1-8B: the repository's name before Llama 3.2


def _base_names(wanted: str) -> list[str]:
    """The names to look up: as given, without its organisation, and its base release's names."""
    names = [wanted, wanted.split("/")[-1]]
    names += [META_PREFIX.sub("", name) for name in names]
    names += [BASE_SUFFIX.sub("", name) for name in names]
    for base in ("", "-base", "-pt", "-hf"):  # Mistral-Nemo-Base-2407, gemma-3-1b-pt, Llama-2-7b-hf
        names += [FINE_TUNE_SUFFIX.sub(base, name, count=1) for name in names[:8]]
    return names


def peft_default_modules(model_type: str | None) -> list[str] | None:
    """The modules PEFT adapts in a family when a LoRA config names none; None where it has no default."""
    return (_catalog("models").get("peft_default_modules") or {}).get(model_type) if model_type else None


def torchtitan_models() -> dict[str, tuple[str, str]]:
    """Catalog id -> torchtitan's (model name, flavor) for the models torchtitan trains."""
    return {key: tuple(value) for key, value in (_catalog("models").get("torchtitan_models") or {}).items()}


def lora_modules(model_type: str | None) -> dict | None:
    """The module names a LoRA config targets for tplan's targets (q, k, ... down), by
    config.json model_type; None for a family whose module names tplan does not know."""
    return (_catalog("models").get("lora_modules") or {}).get(model_type) if model_type else None


def complete_shape(shape: dict) -> dict:
    """Fill defaults (head_dim = hidden / heads, kv_heads = heads, expert width = ffn_hidden)."""
    full = {**SHAPE_DEFAULTS, **shape}
    full["kv_heads"] = full["kv_heads"] or full["heads"]
    full["head_dim"] = full["head_dim"] or full["hidden"] // full["heads"]
    full["expert_ffn_hidden"] = full["expert_ffn_hidden"] or full["ffn_hidden"]
    if full["experts"] == 1:
        full["dense_layers"] = full["layers"]
    return full


def _norm_params(shape: dict) -> int:
    return {"rmsnorm": 1, "layernorm": 2, "none": 0}[shape["norm"]] * shape["hidden"]


def _mlp_bias(shape: dict, width: int) -> int:
    """The biases of one MLP of inner ``width`` (gate and up, down)."""
    return width * (2 if shape["gated_mlp"] else 1) + shape["hidden"] if shape["mlp_bias"] and width else 0


def _mlp_params(shape: dict, width: int) -> int:
    """One MLP of inner ``width``: gate (if gated), up and down matrices, with their biases."""
    return (3 if shape["gated_mlp"] else 2) * shape["hidden"] * width + _mlp_bias(shape, width)


def _attention_vectors(shape: dict) -> int:
    """Attention's one-dimensional parameters: q, k, v and output biases, per-head q/k norms."""
    head_dim = shape["head_dim"]
    return (((shape["heads"] + 2 * shape["kv_heads"]) * head_dim if shape["qkv_bias"] else 0)
            + (shape["hidden"] if shape["attn_out_bias"] else 0) + (2 * head_dim if shape["qk_norm"] else 0))


def _attention_params(shape: dict) -> int:
    hidden, heads, kv, head_dim = shape["hidden"], shape["heads"], shape["kv_heads"], shape["head_dim"]
    return 2 * hidden * heads * head_dim + 2 * hidden * kv * head_dim + _attention_vectors(shape)


def _moe_mlp_params(shape: dict, routed: int) -> int:
    """The MLP of a mixture-of-experts block with ``routed`` experts counted, its shared expert
    (and that expert's sigmoid gate) and the router."""
    shared = _mlp_params(shape, shape["shared_expert_ffn_hidden"]) if shape["shared_expert_ffn_hidden"] else 0
    gate = shape["hidden"] if shape["shared_expert_gate"] else 0
    return routed * _mlp_params(shape, shape["expert_ffn_hidden"]) + shared + gate + shape["hidden"] * shape["experts"]


def blocks_params(shape: dict, active_only: bool = False) -> int:
    """Parameters of all transformer blocks (every expert, or those a token is routed to)."""
    shape = complete_shape(shape)
    routed = shape["experts_per_token"] if active_only else shape["experts"]
    common = _attention_params(shape) + shape["norms_per_layer"] * _norm_params(shape)
    dense, sparse = shape["dense_layers"], shape["layers"] - shape["dense_layers"]
    return (shape["layers"] * common + dense * _mlp_params(shape, shape["ffn_hidden"])
            + sparse * _moe_mlp_params(shape, routed))


def layer_params(shape: dict) -> int:
    """Parameters of the largest transformer block."""
    shape = complete_shape(shape)
    common = _attention_params(shape) + shape["norms_per_layer"] * _norm_params(shape)
    mlp = max(_mlp_params(shape, shape["ffn_hidden"]) if shape["dense_layers"] else 0,
              _moe_mlp_params(shape, shape["experts"]) if shape["dense_layers"] < shape["layers"] else 0)
    return common + mlp


def vector_params(shape: dict, blocks_only: bool = False) -> int:
    """Parameters in one-dimensional tensors - norms and biases (with the final norm unless
    ``blocks_only``). DeepSpeed ZeRO-3 does not partition tensors below
    stage3_param_persistence_threshold (1e5 elements); in a transformer these are they."""
    shape = complete_shape(shape)
    dense, sparse = shape["dense_layers"], shape["layers"] - shape["dense_layers"]
    return (shape["layers"] * (_attention_vectors(shape) + shape["norms_per_layer"] * _norm_params(shape))
            + dense * _mlp_bias(shape, shape["ffn_hidden"])
            + sparse * (shape["experts"] * _mlp_bias(shape, shape["expert_ffn_hidden"])
                        + _mlp_bias(shape, shape["shared_expert_ffn_hidden"]))
            + (0 if blocks_only else _norm_params(shape)))


def mlp_widths_per_token(shape: dict) -> tuple[float, float]:
    """(MLP blocks, summed inner width) a token passes through per layer, averaged over the layers;
    what activations and fp8 casts scale with."""
    shape = complete_shape(shape)
    dense, sparse = shape["dense_layers"], shape["layers"] - shape["dense_layers"]
    shared = 1 if shape["shared_expert_ffn_hidden"] else 0
    blocks = dense + sparse * (shape["experts_per_token"] + shared)
    width = dense * shape["ffn_hidden"] + sparse * (shape["experts_per_token"] * shape["expert_ffn_hidden"]
                                                    + shape["shared_expert_ffn_hidden"])
    return blocks / shape["layers"], width / shape["layers"]


def count_params(shape: dict, active_only: bool = False) -> int:
    """Total parameters from the architecture: embeddings, blocks, final norm, LM head."""
    shape = complete_shape(shape)
    embeddings = shape["vocab"] * shape["hidden"] + shape["position_embeddings"] * shape["hidden"]
    head = 0 if shape["tied_embeddings"] else shape["vocab"] * shape["hidden"]
    return embeddings + blocks_params(shape, active_only) + _norm_params(shape) + head


def lora_params_per_rank(shape: dict, targets: list[str], model_type: str | None = None) -> int:
    """Adapter parameters per unit of rank: each adapted matrix d_in x d_out adds r * (d_in + d_out).
    Where the family fuses projections into one module (GPT-2's c_attn, Phi-3's qkv_proj and
    gate_up_proj), PEFT adapts the whole module once, whichever of its parts is targeted; an MLP
    target adapts that projection in every expert and shared expert (PEFT matches by name). The
    family's module names come from ``model_type`` (config.json's), unfused where it is unknown."""
    shape = complete_shape(shape)
    hidden = shape["hidden"]
    q_out, kv_out = shape["heads"] * shape["head_dim"], shape["kv_heads"] * shape["head_dim"]
    modules = lora_modules(model_type) or {}

    def adapted(parts: dict) -> int:
        """Adapters of one block's ``parts`` (target -> (d_in, d_out)), one per module they name."""
        module_of = {target: modules.get(target, target) for target in parts}
        chosen = {module_of[target] for target in targets if target in parts}
        return sum(parts[fused[0]][0] + sum(parts[target][1] for target in fused)
                   for fused in ([target for target in parts if module_of[target] == module] for module in chosen))

    def mlp(width: int) -> int:
        return adapted({**({"gate": (hidden, width)} if shape["gated_mlp"] else {}),
                        "up": (hidden, width), "down": (width, hidden)})

    attention = adapted({"q": (hidden, q_out), "k": (hidden, kv_out), "v": (hidden, kv_out), "o": (q_out, hidden)})
    moe = shape["experts"] * mlp(shape["expert_ffn_hidden"]) + (
        mlp(shape["shared_expert_ffn_hidden"]) if shape["shared_expert_ffn_hidden"] else 0)
    dense, sparse = shape["dense_layers"], shape["layers"] - shape["dense_layers"]
    return shape["layers"] * attention + dense * mlp(shape["ffn_hidden"]) + sparse * moe


def check_shape(shape: dict, file: str, where: str) -> None:
    """An architecture whose parts fit together: heads split the width, kv heads split the heads."""
    full = complete_shape(shape)
    problems = []
    if shape.get("head_dim") is None and full["hidden"] % full["heads"]:
        problems.append(f"hidden {full['hidden']} divisible by heads {full['heads']} (or an explicit head_dim)")
    if full["heads"] % full["kv_heads"]:
        problems.append(f"kv_heads {full['kv_heads']} dividing heads {full['heads']}")
    if full["experts_per_token"] > full["experts"]:
        problems.append(f"experts_per_token {full['experts_per_token']} at most experts {full['experts']}")
    if full["dense_layers"] > full["layers"]:
        problems.append(f"dense_layers {full['dense_layers']} at most layers {full['layers']}")
    if problems:
        raise InputError(file, where, "an architecture with " + "; ".join(problems))
