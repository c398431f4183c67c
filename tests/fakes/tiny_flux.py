"""A tiny random-weight FLUX pipeline built offline (no hub), saved the way real weights are laid out, and the
fixtures that share it: the provider loads it through the same from_pretrained(path) users run."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxroute.providers.local import LocalWorker
from fluxroute.settings import Settings
from tests.needs import missing

LOCAL_EXTRA = "the local extra is not installed (pip install torch==2.13.0 -e '.[local]')"
TOKENIZER_TEXT = [
    "a lighthouse at dusk",
    "a cat on a mat",
    "the quick brown fox jumps over the lazy dog",
    "abcdefghijklmnopqrstuvwxyz 0123456789",
]


def _byte_characters() -> list[str]:
    """CLIP's byte-level alphabet: the 256 characters its BPE works on."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def _clip_tokenizer(folder: Path) -> object:
    from transformers import CLIPTokenizer

    chars = _byte_characters()
    vocab = [*chars, *(c + "</w>" for c in chars), "th", "the</w>", "<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\nt h\nth e</w>\n", encoding="utf-8")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def _t5_tokenizer(folder: Path) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import T5TokenizerFast

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=150, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tokenizer.train_from_iterator(TOKENIZER_TEXT, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer.save(str(folder / "t5.json"))
    return T5TokenizerFast(
        tokenizer_file=str(folder / "t5.json"), eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0
    )


def require_local_extra() -> None:
    """Skip the calling test or fixture without torch, diffusers or transformers; under CI=true (which installs
    the local extra) fail instead: a missing package there is a broken install, not a reason to pass."""
    for module in ("torch", "diffusers", "transformers"):
        try:
            __import__(module)
        except ImportError:
            missing(f"{module}: {LOCAL_EXTRA}")


def build_tiny_flux(directory: Path, *, schnell: bool = False, kontext: bool = False) -> Path:
    """Random weights, same architecture family as FLUX.1 [dev] (guidance-embedded), ~0.1 M transformer params;
    `schnell` mirrors FLUX.1 [schnell] instead: no guidance embedding (guidance_scale has no effect); `kontext`
    mirrors FLUX.1 Kontext [dev]: the same components (Kontext's transformer is a FluxTransformer2DModel that reads
    the input image's latents as extra tokens) saved with FluxKontextPipeline's model_index.json."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 x the VAE's latent channels
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # T5 d_model
        pooled_projection_dim=32,  # CLIP hidden size
        axes_dims_rope=(4, 6, 6),  # sums to attention_head_dim
        guidance_embeds=not schnell,
    )
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),  # four levels: the real x8 scale
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        shift_factor=0.1159,
        scaling_factor=0.3611,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=600,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=514,
            eos_token_id=515,
            pad_token_id=515,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=200, d_model=32, d_ff=37, d_kv=8, num_layers=2, num_heads=4, relative_attention_num_buckets=8
        )
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    tokens = directory / "tokenizer-sources"
    pipe = (FluxKontextPipeline if kontext else FluxPipeline)(
        scheduler=scheduler,
        vae=vae,
        text_encoder=clip,
        tokenizer=_clip_tokenizer(tokens),
        text_encoder_2=t5,
        tokenizer_2=_t5_tokenizer(tokens),
        transformer=transformer,
    )
    target = directory / ("tiny-flux-schnell" if schnell else "tiny-flux-kontext" if kontext else "tiny-flux")
    pipe.save_pretrained(target)
    return target


class StepGate:
    """Holds the worker thread at one step until the test releases it: deterministic cancel and queue tests."""

    def __init__(self) -> None:
        self.at_step: int | None = None
        self.released = threading.Event()
        self.released.set()

    def hold_at(self, step: int) -> None:
        self.at_step = step
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def __call__(self, job_id: str, step: int) -> None:
        if step == self.at_step:
            self.at_step = None
            self.released.wait(timeout=30)


@pytest.fixture(scope="session")
def tiny_flux_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny FLUX pipeline folder (model_index.json and components); skipped without the local extra,
    except under CI=true, where that fails."""
    require_local_extra()
    return build_tiny_flux(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def tiny_schnell_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny FLUX.1 [schnell]-style folder (FluxPipeline without guidance embedding)."""
    require_local_extra()
    return build_tiny_flux(tmp_path_factory.mktemp("schnell-weights"), schnell=True)


@pytest.fixture(scope="session")
def tiny_kontext_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny FLUX.1 Kontext [dev]-style folder (FluxKontextPipeline, guidance-embedded)."""
    require_local_extra()
    return build_tiny_flux(tmp_path_factory.mktemp("kontext-weights"), kontext=True)


@pytest.fixture(scope="session")
def tiny_krea2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Krea 2 Turbo-style folder (Krea2Pipeline, distilled); see tests/fakes/tiny_krea2.py."""
    require_local_extra()
    from tests.fakes.tiny_krea2 import build_tiny_krea2

    return build_tiny_krea2(tmp_path_factory.mktemp("krea2-weights"))


@pytest.fixture(scope="session")
def session_gate() -> StepGate:
    return StepGate()


@pytest.fixture
def step_gate(session_gate: StepGate) -> Iterator[StepGate]:
    """The session worker's gate, always released when the test ends (pass or fail)."""
    yield session_gate
    session_gate.at_step = None
    session_gate.release()


@pytest.fixture(scope="session")
def local_worker(tiny_flux_path: Path, session_gate: StepGate) -> Iterator[LocalWorker]:
    """One warm CPU worker for the session (the pipeline loads once); tests pass it to LocalProvider."""
    worker = LocalWorker(Settings(local_model=tiny_flux_path, local_device="cpu"), step_hook=session_gate)
    yield worker
    worker.close()


@pytest.fixture
def local_settings(tiny_flux_path: Path, tmp_path: Path) -> Settings:
    """Non-commercial use of the tiny weights on the CPU, images under tmp_path."""
    return Settings(
        home=tmp_path / "home",
        local_model=tiny_flux_path,
        local_device="cpu",
        usage="non-commercial",
        provider_timeout_s=60,
    )


@pytest.fixture(scope="session")
def tiny_flux_lora(tiny_flux_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA file (to_q / to_k / to_v) for the tiny FLUX transformer; see tests/fakes/tiny_lora.py."""
    from tests.fakes.tiny_lora import build_tiny_lora, require_peft

    require_peft()
    return build_tiny_lora(tiny_flux_path, tmp_path_factory.mktemp("flux-lora"))


@pytest.fixture(scope="session")
def tiny_flux_lora_2(tiny_flux_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different LoRA for the tiny FLUX transformer."""
    from tests.fakes.tiny_lora import build_tiny_lora, require_peft

    require_peft()
    return build_tiny_lora(tiny_flux_path, tmp_path_factory.mktemp("flux-lora-2"), seed=2)
