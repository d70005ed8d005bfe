"""Parameter counts of config.json families against the model transformers builds (on the meta
device, so nothing is allocated): tplan must count every supported family exactly, refuse the
others, and reject shapes that do not fit together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from tplan import catalog, hfconfig
from tplan.errors import InputError

CONFIGS = Path(__file__).parent / "data" / "hf_configs"
SUPPORTED = sorted(path for path in CONFIGS.glob("*.json") if path.stem != "deepseek-v3")


def transformers_count(path: Path) -> int:
    """Unique parameters of the model transformers instantiates from this config.json."""
    data = json.loads(path.read_text())
    return meta_count(transformers.AutoConfig.for_model(data.pop("model_type"), **data))


def meta_count(config) -> int:
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("path", SUPPORTED, ids=[path.stem for path in SUPPORTED])
def test_count_equals_the_instantiated_model(path):
    shape = hfconfig.shape_from_hf_config(str(path), "goal.yaml", "model.hf_config")
    assert catalog.count_params(shape) == transformers_count(path)


def _flags(family: hfconfig.Family) -> list[str]:
    """The boolean keys that change a family's count (those tplan refuses when true left out)."""
    keys = [family.attention_bias, family.qkv_bias, family.mlp_bias, family.one_norm_if, "tie_word_embeddings"]
    return sorted({key for key in keys if key})


@st.composite
def family_configs(draw, name: str):
    """A small config of family ``name``: random sizes, and each optional key given or left to the
    config class's default (as save_pretrained leaves a config.json)."""
    family = hfconfig.FAMILIES[name]
    heads = draw(st.sampled_from([2, 4, 8]))
    sizes = {"hidden_size": heads * draw(st.sampled_from([8, 16])), "num_hidden_layers": draw(st.integers(1, 3)),
             "num_attention_heads": heads, "intermediate_size": draw(st.sampled_from([24, 48, 96])),
             "vocab_size": draw(st.sampled_from([101, 256])), "pad_token_id": 0}
    optional = {"num_key_value_heads": st.sampled_from([d for d in (1, 2, heads) if heads % d == 0]),
                "head_dim": st.sampled_from([8, 12, 24]),
                **{key: st.booleans() for key in _flags(family)}}
    if name in ("qwen2_moe", "qwen3_moe", "mixtral"):
        optional.update({"num_local_experts" if name == "mixtral" else "num_experts": st.sampled_from([0, 2, 4]),
                         "num_experts_per_tok": st.just(1), "moe_intermediate_size": st.sampled_from([16, 32]),
                         "shared_expert_intermediate_size": st.sampled_from([0, 40]),
                         "decoder_sparse_step": st.sampled_from([1, 2])})
    if name == "gpt_bigcode":
        optional["multi_query"] = st.booleans()
    given_keys = draw(st.sets(st.sampled_from(sorted(optional))))
    config = {**sizes, **{key: draw(optional[key]) for key in sorted(given_keys)}}
    if family.defaults.get("num_key_value_heads") and family.reads_kv_heads and "num_key_value_heads" not in config:
        config["num_key_value_heads"] = heads   # the class default (8, 16, 32) would not divide the heads
    if config.get("num_experts", config.get("num_local_experts")) and "num_experts_per_tok" not in config:
        config["num_experts_per_tok"] = 1       # the class default (2, 4, 8) routes to more experts than there are
    return config


@pytest.mark.parametrize("name", sorted(hfconfig.FAMILIES))
def test_every_family_is_counted_exactly_whatever_keys_it_states(name, tmp_path):
    # Each config is written as save_pretrained writes it (keys equal to the base class's defaults
    # left out) and as a person writes one (only the keys given), so tplan's defaults per family are
    # under test as much as its formulas.
    @settings(max_examples=8, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(family_configs(name))
    def check(values):
        config = transformers.AutoConfig.for_model(name, **values)
        try:
            expected = meta_count(config)
        except ValueError:      # not a model transformers builds (Qwen2-MoE wants heads x head_dim = hidden)
            reject()
        saved, written = tmp_path / "saved.json", tmp_path / "written.json"
        config.to_json_file(str(saved), use_diff=True)
        written.write_text(json.dumps({"model_type": name, **values}))   # as a person writes one: defaults left out
        for path in (saved, written):
            shape = hfconfig.shape_from_hf_config(str(path), "goal.yaml", "model.hf_config")
            assert catalog.count_params(shape) == expected, (path.name, values)

    check()


@pytest.mark.parametrize("name, key", [(name, key) for name, family in sorted(hfconfig.FAMILIES.items())
                                       for key in family.refused_if])
def test_family_options_tplan_cannot_count_are_refused(name, key, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": name, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                                "intermediate_size": 128, "vocab_size": 256, key: True}))
    with pytest.raises(InputError, match=key):
        hfconfig.shape_from_hf_config(str(path), "goal.yaml", "model.hf_config")


def test_moe_active_parameters_count_routed_experts_only():
    shape = hfconfig.shape_from_hf_config(str(CONFIGS / "qwen3-30b-a3b.json"), "goal.yaml", "model")
    total, active = catalog.count_params(shape), catalog.count_params(shape, active_only=True)
    assert total == pytest.approx(30.5e9, rel=0.01)     # the model card: 30.5B in total
    assert active == pytest.approx(3.3e9, rel=0.02)     # and "3.3B activated" (tplan: 3.35B with embeddings and routers)
    blocks, width = catalog.mlp_widths_per_token(shape)
    assert (blocks, width) == (8, 8 * 768)


def test_unknown_and_unsupported_families_are_refused(tmp_path):
    with pytest.raises(InputError, match="multi-head latent attention"):
        hfconfig.shape_from_hf_config(str(CONFIGS / "deepseek-v3.json"), "goal.yaml", "model")
    odd = tmp_path / "config.json"
    odd.write_text(json.dumps({"model_type": "mamba", "hidden_size": 768, "num_hidden_layers": 24}))
    with pytest.raises(InputError, match="model family tplan counts exactly"):
        hfconfig.shape_from_hf_config(str(odd), "goal.yaml", "model")


@pytest.mark.parametrize("key, value", [("hidden_size", "4096"), ("num_hidden_layers", 16.5),
                                        ("num_attention_heads", True), ("intermediate_size", -4)])
def test_config_values_must_be_positive_integers(tmp_path, key, value):
    data = json.loads((CONFIGS / "llama-3.1-8b.json").read_text())
    data[key] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=key):
        hfconfig.shape_from_hf_config(str(path), "goal.yaml", "model")


@pytest.mark.parametrize("change, fragment", [({"hidden": 1000, "heads": 16}, "divisible by heads"),
                                              ({"kv_heads": 5}, "dividing heads"),
                                              ({"experts": 4, "experts_per_token": 8}, "at most experts")])
def test_inconsistent_shapes_are_refused(tmp_goal, change, fragment):
    from tplan.goal import load_problem

    shape = {"layers": 4, "hidden": 1024, "heads": 16, "ffn_hidden": 4096, "vocab": 32000, **change}
    goal = {"model": shape, "data": {"tokens": 1e9}, "hardware": {"gpu": "a100-80gb"}}
    with pytest.raises(InputError, match=fragment):
        load_problem(tmp_goal(goal))


def test_explicit_params_must_match_the_shape(tmp_goal):
    from tplan.goal import load_problem

    shape = {"layers": 12, "hidden": 768, "heads": 12, "ffn_hidden": 3072, "vocab": 50257, "gated_mlp": False}
    counted = catalog.count_params(shape)
    near = {"model": {**shape, "params": counted * 1.02}, "data": {"tokens": 1e9}, "hardware": {"gpu": "a100-80gb"}}
    assert load_problem(tmp_goal(near)).inputs["model.params"] == pytest.approx(counted * 1.02)
    far = {**near, "model": {**shape, "params": 3.0e7}}   # smaller than its own embeddings
    with pytest.raises(InputError, match=f"{counted:,}"):
        load_problem(tmp_goal(far))


LORA_FAMILIES = sorted(name for name in hfconfig.FAMILIES if catalog.lora_modules(name))


@pytest.mark.parametrize("name", LORA_FAMILIES)
def test_lora_adapters_count_as_peft_builds_them(name, tmp_path):
    # Every target tplan names on the module names its catalog gives the family, as PEFT wraps them
    # (a module shared by several targets, such as a fused qkv projection, is adapted once).
    import peft

    config = transformers.AutoConfig.for_model(name, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                               num_key_value_heads=2, intermediate_size=96, vocab_size=128,
                                               pad_token_id=0)
    path = tmp_path / "config.json"
    config.to_json_file(str(path))
    shape = hfconfig.shape_from_hf_config(str(path), "goal.yaml", "model.hf_config")
    modules = catalog.lora_modules(name)
    with torch.device("meta"):
        model = peft.get_peft_model(transformers.AutoModelForCausalLM.from_config(config),
                                    peft.LoraConfig(r=8, target_modules=sorted(set(modules.values()))))
    trained = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    assert 8 * catalog.lora_params_per_rank(shape, list(modules), name) == trained
