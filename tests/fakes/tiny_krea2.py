"""A tiny random-weight Krea 2 pipeline (diffusers' Krea2Pipeline) built offline, saved the way real weights are
laid out, and its session fixture: the provider loads it through the same from_pretrained(path) users run.

Every component is built from a config in-process, nothing touches the hub:
- text encoder: a `Qwen3VLModel` with a two-layer text tower (head_dim 8, mRoPE sections 2+1+1) and a one-block
  vision tower the pipeline never calls; the pipeline taps hidden states (1, 2), so the transformer's
  `num_text_layers` is 2;
- tokenizer: a byte-level BPE `Qwen2Tokenizer` from a 256-character vocabulary with the chat-template special
  tokens (`<|im_start|>`, `<|im_end|>`, `<|endoftext|>` as padding), loaded back by `AutoTokenizer`;
- VAE: an `AutoencoderKLQwenImage` with three temporal-downsample levels (the real x8 scale), 4 latent channels
  and the fewest residual blocks;
- transformer: a `Krea2Transformer2DModel` with one block (in_channels 16 = 4 latent channels x 2 x 2 patches);
- scheduler: `FlowMatchEulerDiscreteScheduler` with the Krea 2 resolution-aware shift.
Sizes must be multiples of 16 (VAE x8, patch 2). The session fixture `tiny_krea2_path` is in tiny_flux.py (the
fixture plugin tests/conftest.py loads).
"""

from __future__ import annotations

from pathlib import Path

from tests.fakes.tiny_flux import _byte_characters

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def _qwen_tokenizer() -> object:
    """Byte-level BPE over the 256 byte characters, a few merges, and the chat-template special tokens."""
    from transformers import Qwen2Tokenizer

    chars = _byte_characters()
    vocab = [*chars, "Ġa", "th", "the", *SPECIAL_TOKENS]
    merges = [("Ġ", "a"), ("t", "h"), ("th", "e")]
    tokenizer = Qwen2Tokenizer(
        vocab={token: i for i, token in enumerate(vocab)},
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return tokenizer


def build_tiny_krea2(directory: Path, *, distilled: bool = True) -> Path:
    """Random weights in the Krea 2 architecture; `distilled` mirrors Turbo (fixed shift) or Raw (resolution-aware)."""
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        Krea2Pipeline,
        Krea2Transformer2DModel,
    )
    from transformers import Qwen3VLConfig, Qwen3VLModel

    torch.manual_seed(0)
    tokenizer = _qwen_tokenizer()
    text_hidden = 16
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),  # type: ignore[arg-type]
            "hidden_size": text_hidden,
            "intermediate_size": 24,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "max_position_embeddings": 1024,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 1, 1],
                "mrope_interleaved": True,
            },
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "patch_size": 4,
            "out_hidden_size": text_hidden,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": [],
        },
    )
    text_encoder = Qwen3VLModel(config)
    transformer = Krea2Transformer2DModel(
        in_channels=16,  # 4 latent channels x patch 2 x 2
        num_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        timestep_embed_dim=16,
        text_hidden_dim=text_hidden,
        num_text_layers=2,  # the hidden states the pipeline taps (text_encoder_select_layers)
        text_num_attention_heads=2,
        text_num_key_value_heads=2,
        text_intermediate_size=24,
        num_layerwise_text_blocks=1,
        num_refiner_text_blocks=1,
        axes_dims_rope=(4, 6, 6),  # sums to attention_head_dim
    )
    vae = AutoencoderKLQwenImage(
        base_dim=4,
        z_dim=4,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=0,  # the fewest: the router test decodes at 512 px, the catalog's smallest Krea 2 size
        temperal_downsample=[False, True, True],  # three levels: the real x8 scale
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=1.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=6400,
    )
    pipe = Krea2Pipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        text_encoder_select_layers=(1, 2),
        is_distilled=distilled,
    )
    target = directory / ("tiny-krea2-turbo" if distilled else "tiny-krea2-raw")
    pipe.save_pretrained(target)
    return target
