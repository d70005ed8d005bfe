"""Hugging Face config.json files read as tplan architectures, for the families counted exactly.

Each family states which keys its modelling code honours and the defaults its config class applies
when a key is missing (transformers 4.57 modeling_*.py and configuration_*.py); a family not listed
is refused rather than guessed. tests/test_architectures.py builds random configs of every family
with transformers on the meta device and compares the parameter counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .catalog import SHAPE_REQUIRED, check_shape
from .errors import InputError, quote
from .load import read

HF_MAXIMUM = 2**24          # no config.json size or count is larger (Llama 4 Scout: 10.5M positions)


@dataclass(frozen=True)
class Family:
    shape: dict                          # shape fields the family's blocks fix, whatever the keys say
    defaults: dict = field(default_factory=dict)   # config key -> its config class's default, where a left-out
                                                   # key is not simply absent (num_key_value_heads left out: heads;
                                                   # head_dim: hidden / heads; a flag: false)
    reads_kv_heads: bool = True          # whether num_key_value_heads is read at all
    reads_head_dim: bool = True          # whether head_dim is read at all
    attention_bias: str | None = None    # the key that puts biases on q, k, v and o
    qkv_bias: str | None = None          # the key that puts biases on q, k and v only
    mlp_bias: str | None = None          # the key that puts biases on the MLP
    one_norm_if: str | None = None       # the key that, when true, leaves one norm per block (parallel residual)
    refused_if: dict = field(default_factory=dict)   # key -> what tplan cannot count when it is true


_GPT2_STYLE = {"gated_mlp": False, "norm": "layernorm", "qkv_bias": True, "attn_out_bias": True, "mlp_bias": True}
FAMILIES = {
    "llama": Family({"tied_embeddings": False}, attention_bias="attention_bias", mlp_bias="mlp_bias"),
    "granite": Family({"tied_embeddings": False}, attention_bias="attention_bias", mlp_bias="mlp_bias"),
    "mistral": Family({"tied_embeddings": False}, {"num_key_value_heads": 8}),
    "mixtral": Family({"tied_embeddings": False}, {"num_key_value_heads": 8, "num_local_experts": 8,
                                                   "num_experts_per_tok": 2}),
    "phi3": Family({"tied_embeddings": False}),
    "qwen2": Family({"tied_embeddings": False, "qkv_bias": True}, {"num_key_value_heads": 32}),
    "qwen2_moe": Family({"tied_embeddings": False}, {"num_key_value_heads": 16, "qkv_bias": True, "num_experts": 60,
                                                     "num_experts_per_tok": 4, "moe_intermediate_size": 1408,
                                                     "shared_expert_intermediate_size": 5632}, qkv_bias="qkv_bias"),
    "qwen3": Family({"tied_embeddings": False, "qk_norm": True}, {"num_key_value_heads": 32, "head_dim": 128},
                    attention_bias="attention_bias"),
    "qwen3_moe": Family({"tied_embeddings": False, "qk_norm": True},
                        {"num_key_value_heads": 4, "num_experts": 128, "num_experts_per_tok": 8,
                         "moe_intermediate_size": 768}, attention_bias="attention_bias"),
    "gemma": Family({"tied_embeddings": True}, {"num_key_value_heads": 16, "head_dim": 256},
                    attention_bias="attention_bias"),
    "gemma2": Family({"tied_embeddings": True, "norms_per_layer": 4}, {"num_key_value_heads": 4, "head_dim": 256},
                     attention_bias="attention_bias"),
    "gemma3_text": Family({"tied_embeddings": True, "norms_per_layer": 4, "qk_norm": True},
                          {"num_key_value_heads": 4, "head_dim": 256}, attention_bias="attention_bias"),
    "olmo": Family({"tied_embeddings": False, "norm": "none"}, attention_bias="attention_bias"),  # non-parametric LayerNorm
    "starcoder2": Family({"tied_embeddings": True, "gated_mlp": False, "norm": "layernorm"},
                         {"num_key_value_heads": 2, "use_bias": True}, attention_bias="use_bias", mlp_bias="use_bias"),
    "stablelm": Family({"tied_embeddings": False, "norm": "layernorm"}, {"num_key_value_heads": 32}, reads_head_dim=False,
                       qkv_bias="use_qkv_bias", one_norm_if="use_parallel_residual",
                       refused_if={"qk_layernorm": "a LayerNorm per head on q and k"}),
    # CohereLayerNorm has a weight and no bias: as many parameters as an RMSNorm; one norm per block
    "cohere": Family({"tied_embeddings": True, "norms_per_layer": 1}, attention_bias="attention_bias",
                     refused_if={"use_qk_norm": "q and k norms over every head's own weights"}),
    "gpt2": Family({"tied_embeddings": True, **_GPT2_STYLE}, {"n_positions": 1024},
                   reads_kv_heads=False, reads_head_dim=False),
    "gpt_bigcode": Family({"tied_embeddings": True, **_GPT2_STYLE}, {"n_positions": 1024, "multi_query": True},
                          reads_kv_heads=False, reads_head_dim=False),
    "gpt_neox": Family({"tied_embeddings": False, **_GPT2_STYLE}, {"attention_bias": True}, reads_kv_heads=False,
                       reads_head_dim=False, attention_bias="attention_bias"),
}
ALIASES = {"gemma3": "gemma3_text"}       # multimodal wrappers whose text_config holds the LM
UNSUPPORTED = {"deepseek_v2": "multi-head latent attention (low-rank q and kv projections)",
               "deepseek_v3": "multi-head latent attention (low-rank q and kv projections)"}


def shape_from_hf_config(path: str, file: str, where: str) -> dict:
    """Architecture from a Hugging Face config.json on disk (and its model_type), for the families
    in FAMILIES; any other family is refused rather than guessed."""
    config = read(path).data
    if not isinstance(config, dict):
        raise InputError(path, "top level", "a JSON object (a Hugging Face config.json)")
    if isinstance(config.get("text_config"), dict):
        config = {**config, **config["text_config"]}  # multimodal wrappers (Gemma 3) keep the LM here
    name = ALIASES.get(str(config.get("model_type", "")), str(config.get("model_type", "")))
    family = FAMILIES.get(name)
    if family is None:
        reason = UNSUPPORTED.get(name, "a parameter layout tplan does not know")
        raise InputError(path, "model_type", f"a model family tplan counts exactly ({', '.join(sorted(FAMILIES))}); "
                                             f"{name or 'no model_type'!r} has {reason} - give an explicit shape "
                                             f"with its params instead")
    reader = _Reader(config, path, family.defaults)
    for key, reason in family.refused_if.items():
        if reader.flag(key):
            raise InputError(path, key, f"false: tplan does not count {reason} ({name} with {key} true) - "
                                        f"give an explicit shape with its params instead")
    shape = {**family.shape, **_sizes(name, family, reader)}
    shape["tied_embeddings"] = reader.flag("tie_word_embeddings", shape["tied_embeddings"])
    _biases(family, reader, shape)
    if family.one_norm_if and reader.flag(family.one_norm_if):
        shape["norms_per_layer"] = 1
    _moe(name, reader, shape)
    missing = [key for key in SHAPE_REQUIRED if not shape.get(key)]
    if missing:
        raise InputError(path, "top level", f"config.json keys for {', '.join(missing)} "
                                            f"(e.g. num_hidden_layers, hidden_size, num_attention_heads, "
                                            f"intermediate_size, vocab_size)")
    check_shape(shape, path, "top level")
    return {key: value for key, value in shape.items() if value is not None} | {"model_type": config.get("model_type")}


class _Reader:
    """Typed reads of config.json keys, naming the file and key on a bad value; a key the file leaves
    out takes the family's default for it (else ``default``)."""

    def __init__(self, config: dict, path: str, defaults: dict):
        self.config, self.path, self.defaults = config, path, defaults

    def number(self, *keys, default=None, minimum=1):
        key = next((k for k in keys if self.config.get(k) is not None), None)
        if key is None:
            return self.defaults.get(keys[0], default)
        value = self.config[key]
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= HF_MAXIMUM:
            raise InputError(self.path, key, f"an integer from {minimum} to {HF_MAXIMUM:,}, not {quote(value)}")
        return value

    def flag(self, key, default=False):
        value = self.config.get(key, self.defaults.get(key, default))
        if not isinstance(value, bool):
            raise InputError(self.path, key, f"true or false, not {value!r}")
        return value


def _sizes(name: str, family: Family, reader: _Reader) -> dict:
    """Widths, heads and counts, each read from the keys its family's code reads."""
    if name in ("gpt2", "gpt_bigcode"):   # GPT-2 keys; the MLP is 4 x wide unless n_inner says
        hidden = reader.number("n_embd", "hidden_size")   # the config class maps the common names onto its own
        return {"layers": reader.number("n_layer", "num_hidden_layers"), "hidden": hidden,
                "heads": reader.number("n_head", "num_attention_heads"),
                "kv_heads": 1 if name == "gpt_bigcode" and reader.flag("multi_query") else None,
                "vocab": reader.number("vocab_size"), "ffn_hidden": reader.number("n_inner", default=4 * (hidden or 0)),
                "position_embeddings": reader.number("n_positions", "max_position_embeddings"),
                "max_context": reader.number("n_positions", "max_position_embeddings"),
                "dropout": _dropout(reader)}
    heads = reader.number("num_attention_heads")
    return {"layers": reader.number("num_hidden_layers"), "hidden": reader.number("hidden_size"), "heads": heads,
            "kv_heads": reader.number("num_key_value_heads") if family.reads_kv_heads else None,
            "head_dim": reader.number("head_dim") if family.reads_head_dim else None,
            "vocab": reader.number("vocab_size"), "ffn_hidden": reader.number("intermediate_size"),
            "max_context": reader.number("max_position_embeddings", default=0, minimum=0)}


def _dropout(reader: _Reader) -> bool:
    """Whether a GPT-2-style model keeps dropout masks (its config class defaults every probability to 0.1)."""
    return any(isinstance(p, (int, float)) and p > 0
               for p in (reader.config.get(key, 0.1) for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop")))


def _biases(family: Family, reader: _Reader, shape: dict) -> None:
    """The biases the family's bias keys switch on."""
    if family.attention_bias:
        shape.update(qkv_bias=reader.flag(family.attention_bias), attn_out_bias=reader.flag(family.attention_bias))
    if family.qkv_bias:
        shape["qkv_bias"] = reader.flag(family.qkv_bias)
    if family.mlp_bias:
        shape["mlp_bias"] = reader.flag(family.mlp_bias)


def _moe(name: str, reader: _Reader, shape: dict) -> None:
    """Experts, their width, shared experts and dense layers of the MoE families."""
    if name == "mixtral":
        shape.update(experts=reader.number("num_local_experts"), experts_per_token=reader.number("num_experts_per_tok"))
    elif name in ("qwen2_moe", "qwen3_moe"):
        experts = reader.number("num_experts", minimum=0)
        if not experts:       # no experts: every block is dense
            return
        step, only = reader.number("decoder_sparse_step", default=1), reader.config.get("mlp_only_layers") or []
        if not isinstance(only, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in only):
            raise InputError(reader.path, "mlp_only_layers", f"a list of layer indices, not {only!r}")
        sparse = [i for i in range(shape["layers"]) if (i + 1) % step == 0 and i not in only]
        shape.update(experts=experts, experts_per_token=reader.number("num_experts_per_tok"),
                     expert_ffn_hidden=reader.number("moe_intermediate_size"), dense_layers=shape["layers"] - len(sparse))
        if name == "qwen2_moe":   # the shared expert's sigmoid gate exists even at width 0
            shape.update(shared_expert_ffn_hidden=reader.number("shared_expert_intermediate_size", minimum=0),
                         shared_expert_gate=True)
