"""Tiny random LoRAs for the tiny pipelines, built at test time (no hub): peft adapters on the transformer's attention
projections (to_q, to_k, to_v), saved in diffusers' LoRA format by the pipeline class's own save_lora_weights, the
file local inference then loads with load_lora_weights. The session fixtures are in tiny_flux.py."""

from __future__ import annotations

import json
from pathlib import Path

from tests.needs import missing

# the attention projections of FluxTransformer2DModel and Krea2Transformer2DModel (the ones QKV fusion merges)
TARGETS = ["to_q", "to_k", "to_v"]


def require_peft() -> None:
    """Skip without peft (fail under CI=true, which installs the local extra that brings it)."""
    try:
        import peft  # noqa: F401
    except ImportError:
        missing("peft: the local extra is not installed (pip install -e '.[local]')")


def build_tiny_lora(pipeline: Path, target: Path, *, seed: int = 1, rank: int = 4) -> Path:
    """A LoRA file for the transformer of the pipeline folder `pipeline` (random, non-zero: it changes the image),
    written to target/pytorch_lora_weights.safetensors; returns that file."""
    import diffusers
    import torch
    from peft import LoraConfig, get_peft_model_state_dict

    index = json.loads((pipeline / "model_index.json").read_text(encoding="utf-8"))
    transformer = getattr(diffusers, index["transformer"][1]).from_pretrained(pipeline / "transformer")
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS, init_lora_weights=False)
    transformer.add_adapter(config, adapter_name="tiny")
    layers = get_peft_model_state_dict(transformer, adapter_name="tiny")
    getattr(diffusers, index["_class_name"]).save_lora_weights(target, transformer_lora_layers=layers)
    return target / "pytorch_lora_weights.safetensors"
