"""Parameter counts of config.json families against the model transformers builds (on the meta
device, so nothing is allocated): tplan must count every supported family exactly, refuse the
others, and reject shapes that do not fit together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from tplan import catalog
from tplan.errors import InputError

CONFIGS = Path(__file__).parent / "data" / "hf_configs"
SUPPORTED = sorted(path for path in CONFIGS.glob("*.json") if path.stem != "deepseek-v3")


def transformers_count(path: Path) -> int:
    """Unique parameters of the model transformers instantiates from this config.json."""
    data = json.loads(path.read_text())
    config = transformers.AutoConfig.for_model(data.pop("model_type"), **data)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("path", SUPPORTED, ids=[path.stem for path in SUPPORTED])
def test_count_equals_the_instantiated_model(path):
    shape = catalog.shape_from_hf_config(str(path), "goal.yaml", "model.hf_config")
    assert catalog.count_params(shape) == transformers_count(path)


def test_moe_active_parameters_count_routed_experts_only():
    shape = catalog.shape_from_hf_config(str(CONFIGS / "qwen3-30b-a3b.json"), "goal.yaml", "model")
    total, active = catalog.count_params(shape), catalog.count_params(shape, active_only=True)
    assert total == pytest.approx(30.5e9, rel=0.01)     # the model card: 30.5B in total
    assert active == pytest.approx(3.3e9, rel=0.02)     # and "3.3B activated" (tplan: 3.35B with embeddings and routers)
    blocks, width = catalog.mlp_widths_per_token(shape)
    assert (blocks, width) == (8, 8 * 768)


def test_unknown_and_unsupported_families_are_refused(tmp_path):
    with pytest.raises(InputError, match="multi-head latent attention"):
        catalog.shape_from_hf_config(str(CONFIGS / "deepseek-v3.json"), "goal.yaml", "model")
    odd = tmp_path / "config.json"
    odd.write_text(json.dumps({"model_type": "mamba", "hidden_size": 768, "num_hidden_layers": 24}))
    with pytest.raises(InputError, match="model family tplan counts exactly"):
        catalog.shape_from_hf_config(str(odd), "goal.yaml", "model")


@pytest.mark.parametrize("key, value", [("hidden_size", "4096"), ("num_hidden_layers", 16.5),
                                        ("num_attention_heads", True), ("intermediate_size", -4)])
def test_config_values_must_be_positive_integers(tmp_path, key, value):
    data = json.loads((CONFIGS / "llama-3.1-8b.json").read_text())
    data[key] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=key):
        catalog.shape_from_hf_config(str(path), "goal.yaml", "model")


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
