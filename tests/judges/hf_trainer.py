"""Judge: load a TRL SFT config (and the DeepSpeed JSON it names) as `trl sft` and the Hugging Face
Trainer do, then hand the Trainer's resolved DeepSpeed config to DeepSpeed's own parser; with a
config.json, put the config's LoRA adapters on that architecture (built on the meta device).
Prints what the engines understood as JSON.   usage: hf_trainer.py SFT_CONFIG.yaml [config.json]
"""

import copy
import json
import os
import sys
from pathlib import Path

import torch
import transformers
import transformers.training_args
import yaml
from transformers import CONFIG_MAPPING, AutoModelForCausalLM, HfArgumentParser, LlamaConfig, LlamaForCausalLM
from trl import ModelConfig, ScriptArguments, SFTConfig

# a CPU machine: bf16 is for the GPUs the file runs on (TrainingArguments refuses it without one)
transformers.training_args.is_torch_bf16_gpu_available = lambda *args, **kwargs: True

path = Path(sys.argv[1]).resolve()
sys.argv[2:] = [str(Path(argument).resolve()) for argument in sys.argv[2:]]
data = yaml.safe_load(path.read_text())
data.setdefault("dataset_name", "your-org/your-dataset")  # launch.sh passes it on the command line
os.chdir(path.parent)  # launch.sh runs from the file's folder: the files name each other relatively
_, args, model_args = HfArgumentParser((ScriptArguments, SFTConfig, ModelConfig)).parse_dict(
    data, allow_extra_keys=False)  # an unknown key raises
result = {"transformers": transformers.__version__, "micro_batch": args.per_device_train_batch_size,
          "grad_accum": args.gradient_accumulation_steps, "bf16": args.bf16, "fp16": args.fp16,
          "gradient_checkpointing": args.gradient_checkpointing, "optim": str(args.optim.value),
          "max_length": args.max_length, "max_steps": args.max_steps, "warmup_steps": args.warmup_steps,
          "dtype": model_args.dtype, "use_peft": model_args.use_peft, "lora_r": model_args.lora_r,
          "load_in_4bit": model_args.load_in_4bit, "load_in_8bit": model_args.load_in_8bit,
          "attn_implementation": model_args.attn_implementation, "use_liger_kernel": args.use_liger_kernel}
if args.deepspeed:
    tiny = LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=4))
    trainer_config = args.hf_deepspeed_config
    trainer_config.trainer_config_finalize(args, tiny, args.max_steps)  # raises when the two files disagree
    final = trainer_config.config
    assert "auto" not in json.dumps(final), final

    import deepspeed.comm
    from deepspeed.runtime.config import DeepSpeedConfig

    deepspeed.comm.get_rank = lambda *args, **kwargs: 0  # no process group on a test machine

    class OneRank:
        def get_data_parallel_world_size(self):
            return 1

    parsed = DeepSpeedConfig(copy.deepcopy(final), mpu=OneRank())
    offload = parsed.zero_config.offload_optimizer
    params = parsed.zero_config.offload_param
    result["deepspeed"] = {"zero_stage": parsed.zero_optimization_stage, "bf16": parsed.bfloat16_config.enabled,
                           "fp16": parsed.float16_config.enabled,
                           "offload_optimizer": offload is not None and str(offload.device).endswith("cpu"),
                           "offload_param": params is not None and str(params.device).endswith("cpu"),
                           "micro_batch": parsed.train_micro_batch_size_per_gpu,
                           "grad_accum": parsed.gradient_accumulation_steps,
                           "clipping": parsed.gradient_clipping}
if model_args.use_peft and len(sys.argv) > 2:
    from peft import LoraConfig, get_peft_model

    config_json = json.loads(Path(sys.argv[2]).read_text())
    architecture = CONFIG_MAPPING[config_json["model_type"]].from_json_file(sys.argv[2])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(architecture)
    model = get_peft_model(model, LoraConfig(r=model_args.lora_r, lora_alpha=model_args.lora_alpha,
                                             target_modules=model_args.lora_target_modules))  # no match raises
    result["lora_params"] = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
print(json.dumps(result))
