"""Tiny diffusion models with random weights, built here for the real-generation tests.

InvokeAI identifies a diffusers folder by its config files (pipeline class, the UNet's
``cross_attention_dim`` and ``in_channels``, the scheduler's ``prediction_type``), not by its
weights, so a pipeline built from configs with tiny channel counts installs as a real
``sd-1 / main / diffusers`` model and denoises in milliseconds per step on a CPU. Nothing is
downloaded: the tokenizer's vocabulary is the 256 byte-level tokens plus the two specials.

SD3 and CogView4 pipelines are probed by their pipeline class alone (``model_index.json``) and
each submodel is loaded with ``from_pretrained`` from its folder's config, so they are tiny too;
their denoisers make 16-channel latents (InvokeAI's previews of both mix 16 channels into RGB).

The build runs in InvokeAI's own virtualenv (it has torch, diffusers and transformers); the
folders are cached per recipe under the test InvokeAI's cache, so a machine builds them once.

Command line (with the InvokeAI virtualenv's python)::

    python tests/support/tiny_models.py build <folder>
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

RECIPE_VERSION = "v6"
SD1_NAME = "tiny-sd1"
SDXL_NAME = "tiny-sdxl"
SDXL_VAE_NAME = "tiny-sdxl-vae"
SD1_LORA_NAME = "tiny-sd1-lora"
SD1_LORA_FILE = f"{SD1_LORA_NAME}.safetensors"
SD1_CONTROLNET_NAME = "tiny-sd1-controlnet"
SDXL_CONTROLNET_NAME = "tiny-sdxl-controlnet"
UPSCALER_NAME = "tiny-esrgan-x2"
UPSCALER_FILE = f"{UPSCALER_NAME}.safetensors"
SD3_NAME = "tiny-sd3"
COGVIEW4_NAME = "tiny-cogview4"
WAN_T2V_NAME = "tiny-wan-t2v-a14b"
WAN_I2V_NAME = "tiny-wan-i2v-a14b"
WAN_TI2V_NAME = "tiny-wan-ti2v-5b"
# The Wan LoRA probe reads the expert a LoRA is for from a bare HIGH or LOW in its file name.
WAN_LORA_HIGH_NAME = "tiny-wan-lora-high"
WAN_LORA_LOW_NAME = "tiny-wan-lora-low"
WAN_LORA_HIGH_FILE = f"{WAN_LORA_HIGH_NAME}.safetensors"
WAN_LORA_LOW_FILE = f"{WAN_LORA_LOW_NAME}.safetensors"
# Named for neither expert: applied to both.
WAN_CONCEPT_LORA_NAME = "tiny-wan-concept-lora"
WAN_CONCEPT_LORA_FILE = f"{WAN_CONCEPT_LORA_NAME}.safetensors"
SD1_IP_ADAPTER_NAME = "tiny-sd1-ip-adapter"
SD1_IP_ADAPTER_FILE = f"{SD1_IP_ADAPTER_NAME}.safetensors"
# The ip_adapter node looks its image encoder up by this exact name (the starter model's, for
# its default "ViT-H" choice) and downloads it when none is installed: installed under this name,
# the tiny encoder is found instead.
IMAGE_ENCODER_NAME = "IP Adapter SD1.5 Image Encoder"
IMAGE_ENCODER_DIR = "tiny-clip-vision"
_IMAGE_EMBED_DIM = 32
READY = ".built"


def cache_dir(venv: Path) -> Path:
    """Where the built models live: beside the cached InvokeAI, keyed by this file's recipe."""
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return venv.parent / f"tiny-models-{RECIPE_VERSION}-{digest}"


def ensure_built(venv: Path) -> Path:
    """Build the tiny models once (in InvokeAI's virtualenv) and return their folder."""
    folder = cache_dir(venv)
    if not (folder / READY).exists():
        python = venv / "bin" / "python"
        subprocess.run([str(python), __file__, "build", str(folder)], check=True)
    return folder


# -- the build (runs inside InvokeAI's virtualenv) ----------------------------------------------


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins of bytes that byte-level BPE tokenizers use (GPT-2's)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\u00a1"), ord("\u00ac") + 1),
        *range(ord("\u00ae"), ord("\u00ff") + 1),
    ]
    shifted = 0
    symbols = {}
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + shifted)
            shifted += 1
    return [symbols[byte] for byte in range(256)]


def _byte_level_vocab() -> dict[str, int]:
    """A CLIP vocabulary of the byte-level alphabet alone (so it needs no merges)."""
    alphabet = _byte_alphabet()
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    vocab.update({f"{symbol}</w>": len(alphabet) + i for i, symbol in enumerate(alphabet)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def _tiny_vae(latent_channels: int = 4) -> Any:
    """Four blocks: 8x from pixels to latents, InvokeAI's fixed ``LATENT_SCALE_FACTOR``."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=latent_channels,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
    )


def _tiny_text_encoder(tokenizer: Any, hidden: int, *, projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _ddim() -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def _build_sdxl(target: Path, vae_target: Path) -> None:
    """SDXL: two text encoders (768, and 1280 with projection), UNet cross-attention 2048."""
    import torch
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    torch.manual_seed(0)
    unet = _tiny_unet(2048, **_SDXL_ADDED_EMBEDDINGS)
    tokenizer = CLIPTokenizer(vocab=_byte_level_vocab(), merges=[], model_max_length=77)
    tokenizer_2 = CLIPTokenizer(
        vocab=_byte_level_vocab(), merges=[], model_max_length=77, pad_token="!"
    )
    vae = _tiny_vae()
    pipeline = StableDiffusionXLPipeline(
        unet=unet,
        vae=vae,
        text_encoder=_tiny_text_encoder(tokenizer, 768, projection=False),
        text_encoder_2=_tiny_text_encoder(tokenizer_2, 1280, projection=True),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        scheduler=_ddim(),
    )
    pipeline.save_pretrained(str(target), safe_serialization=True)
    vae.save_pretrained(str(vae_target), safe_serialization=True)


# The UNet's encoder half; a ControlNet copies it, so both are built from this one shape.
_UNET_ENCODER: dict[str, Any] = {
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "in_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
_SDXL_TIME_EMBED_DIM = 8
# SDXL's extra conditioning: the pooled 1280-wide text embedding and six size numbers.
_SDXL_ADDED_EMBEDDINGS: dict[str, Any] = {
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": _SDXL_TIME_EMBED_DIM,
    "projection_class_embeddings_input_dim": 1280 + 6 * _SDXL_TIME_EMBED_DIM,
}


def _tiny_unet(cross_attention_dim: int, **extra: Any) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        **_UNET_ENCODER,
        sample_size=8,
        out_channels=4,
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        **extra,
    )


def _build_controlnet(target: Path, cross_attention_dim: int, **extra: Any) -> None:
    """A ControlNet for the tiny UNet: its encoder half, plus a control-image embedding.

    The embedding's four widths give three stride-2 convolutions, the VAE's 8x from pixels to
    latents, so a control image of the output's size lands on the latent grid. InvokeAI tells
    the base by ``cross_attention_dim`` in ``config.json`` (768 sd-1, 2048 sdxl).

    A new ControlNet's output convolutions start at zero (training grows them from there), so
    it would change nothing. Here the control image's embedding is strong (std 1) and the
    residuals handed to the UNet weak (std 0.05): the control image then steers the picture,
    which the tests can see, without swamping it (with residuals of std 0.1 the picture came out
    the same for any control image).
    """
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    controlnet = ControlNetModel(
        **_UNET_ENCODER,
        cross_attention_dim=cross_attention_dim,
        conditioning_embedding_out_channels=(4, 8, 8, 16),
        **extra,
    )
    with torch.no_grad():
        torch.nn.init.normal_(controlnet.controlnet_cond_embedding.conv_out.weight, std=1.0)
        for convolution in (*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block):
            torch.nn.init.normal_(convolution.weight, std=0.05)
    controlnet.save_pretrained(str(target), safe_serialization=True)


def _build_upscaler(target: Path) -> None:
    """A 2x ESRGAN (RRDBNet, old-arch keys) of 8 features and one block, for spandrel.

    Spandrel, which InvokeAI's probe runs on the file, knows the architecture by its keys
    (``model.0.weight``, ``model.1.sub.0.RDB1.conv1.0.weight``) and reads the scale from the
    number of upsampling layers, so spandrel's own class builds a state dict it recognises.
    """
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    model = ESRGAN(num_filters=8, num_blocks=1, scale=2)
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(target))


def _build_image_encoder(target: Path) -> None:
    """A one-layer CLIP vision tower with projection, at the 224-pixel input CLIP expects."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        image_size=224,
        patch_size=32,
        projection_dim=_IMAGE_EMBED_DIM,
    )
    CLIPVisionModelWithProjection(config).save_pretrained(str(target), safe_serialization=True)


def _build_sd1_ip_adapter(target: Path) -> None:
    """An IP-Adapter (checkpoint format) for the tiny SD1.5 UNet and the tiny image encoder.

    InvokeAI numbers the IP weights by the position of each attention processor in the UNet's
    ``attn_processors`` and reads the base from ``ip_adapter.1.to_k_ip.weight`` (768 wide is
    SD1.5), so the keys come from walking the tiny UNet itself: one ``to_k_ip``/``to_v_ip`` pair
    per cross-attention, as wide as that attention. ``image_proj`` turns the encoder's embedding
    into four 768-wide tokens.
    """
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    unet = _tiny_unet(768)
    tokens, width = 4, 768
    tensors = {
        "image_proj.proj.weight": torch.randn(tokens * width, _IMAGE_EMBED_DIM) * 0.01,
        "image_proj.proj.bias": torch.zeros(tokens * width),
        "image_proj.norm.weight": torch.ones(width),
        "image_proj.norm.bias": torch.zeros(width),
    }
    for index, name in enumerate(unet.attn_processors):
        if not name.endswith("attn2.processor"):
            continue
        attention = unet.get_submodule(name.removesuffix(".processor"))
        for projection in ("to_k_ip", "to_v_ip"):
            tensors[f"ip_adapter.{index}.{projection}.weight"] = (
                torch.randn(attention.to_k.out_features, width) * 0.01
            )
    save_file(tensors, str(target))


def _build_sd1(target: Path) -> None:
    """SD1.5: one 768-wide text encoder, UNet cross-attention 768."""
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    torch.manual_seed(0)
    tokenizer = CLIPTokenizer(vocab=_byte_level_vocab(), merges=[], model_max_length=77)
    pipeline = StableDiffusionPipeline(
        unet=_tiny_unet(768),
        vae=_tiny_vae(),
        text_encoder=_tiny_text_encoder(tokenizer, 768, projection=False),
        tokenizer=tokenizer,
        scheduler=_ddim(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(str(target), safe_serialization=True)


def _build_sd1_lora(target: Path) -> None:
    """A Kohya-format LoRA for the tiny SD1.5 UNet's cross-attention keys and values.

    InvokeAI tells a LoRA's base by the width of the tokens it attends to (the second
    dimension of an ``attn2_to_k`` down weight): 768 is SD1.5.
    """
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    rank, inner = 4, 32  # the first UNet block's width
    tensors = {}
    for projection in ("to_k", "to_v"):
        key = f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_{projection}"
        tensors[f"{key}.lora_down.weight"] = torch.randn(rank, 768) * 0.01
        tensors[f"{key}.lora_up.weight"] = torch.randn(inner, rank) * 0.01
        tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    save_file(tensors, str(target))


# SD3 and CogView4 latents: 16 channels, on an 8x8 grid at 64x64 pixels, in 2x2 patches.
_FLOW_LATENT_CHANNELS = 16
_TRANSFORMER: dict[str, Any] = {
    "patch_size": 2,
    "in_channels": _FLOW_LATENT_CHANNELS,
    "out_channels": _FLOW_LATENT_CHANNELS,
    "num_layers": 1,
    "attention_head_dim": 8,
    "num_attention_heads": 4,
    "sample_size": 8,
    # Position tables of 32 patches a side: pictures up to 512 pixels.
    "pos_embed_max_size": 32,
}
_SD3_CLIP_WIDTH = 32
_T5_WIDTH = 64  # the joint attention width: both CLIP widths side by side fit in it


def _flow_match_scheduler() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(shift=3.0)


def _character_pieces() -> list[tuple[str, float]]:
    """A unigram vocabulary of T5's three specials, the word-start mark and printable ASCII."""
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    return [*specials, *((chr(code), -5.0) for code in range(ord("!"), ord("~") + 1))]


def _build_sd3(target: Path) -> None:
    """SD3: CLIP-L and CLIP-G (with projection), a T5 encoder, an ``SD3Transformer2DModel``.

    InvokeAI's SD3 prompt node puts both CLIP sequences side by side, pads them to the T5
    width and stacks the T5 sequence under them, so the transformer's ``joint_attention_dim``
    is the T5 width and its ``pooled_projection_dim`` the two CLIP projections together. The
    CLIP widths are neither 768 nor 1280, so the probe records no CLIP variant for the
    submodels: the model loader node takes them from the pipeline and never asks.
    """
    import torch
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

    torch.manual_seed(0)
    tokenizer = CLIPTokenizer(vocab=_byte_level_vocab(), merges=[], model_max_length=77)
    tokenizer_2 = CLIPTokenizer(
        vocab=_byte_level_vocab(), merges=[], model_max_length=77, pad_token="!"
    )
    tokenizer_3 = T5Tokenizer(vocab=_character_pieces(), extra_ids=0)
    t5_config = T5Config(
        vocab_size=len(tokenizer_3),
        d_model=_T5_WIDTH,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_heads=4,
        pad_token_id=tokenizer_3.pad_token_id,
        eos_token_id=tokenizer_3.eos_token_id,
    )
    transformer = SD3Transformer2DModel(
        **_TRANSFORMER,
        joint_attention_dim=_T5_WIDTH,
        caption_projection_dim=32,
        pooled_projection_dim=2 * _SD3_CLIP_WIDTH,
    )
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=_flow_match_scheduler(),
        vae=_tiny_vae(_FLOW_LATENT_CHANNELS),
        text_encoder=_tiny_text_encoder(tokenizer, _SD3_CLIP_WIDTH, projection=True),
        tokenizer=tokenizer,
        text_encoder_2=_tiny_text_encoder(tokenizer_2, _SD3_CLIP_WIDTH, projection=True),
        tokenizer_2=tokenizer_2,
        text_encoder_3=T5EncoderModel(t5_config),
        tokenizer_3=tokenizer_3,
    )
    pipeline.save_pretrained(str(target), safe_serialization=True)


def _glm_tokenizer() -> Any:
    """A fast tokenizer of single printable characters that, like GLM's, starts every prompt
    with ``[gMASK]<sop>`` and pads on the left (an empty negative prompt is then two tokens,
    not none: the encoder cannot take an empty sequence)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "[gMASK]": 2, "<sop>": 3}
    vocab.update({chr(code): len(vocab) + i for i, code in enumerate(range(32, 127))})
    characters = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    characters.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    characters.post_processor = processors.TemplateProcessing(
        single="[gMASK] <sop> $A",
        special_tokens=[("[gMASK]", vocab["[gMASK]"]), ("<sop>", vocab["<sop>"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=characters, pad_token="<pad>", unk_token="<unk>", padding_side="left"
    )


def _build_cogview4(target: Path) -> None:
    """CogView4: a two-layer GLM text encoder and a ``CogView4Transformer2DModel``.

    InvokeAI's CogView4 prompt node takes the GLM's next-to-last hidden states as the prompt,
    so the transformer's ``text_embed_dim`` is the GLM width. InvokeAI runs every CogView4
    submodel in bfloat16, which the CPU does too.
    """
    import torch
    from diffusers import CogView4Pipeline, CogView4Transformer2DModel
    from transformers import GlmConfig, GlmModel

    torch.manual_seed(0)
    tokenizer = _glm_tokenizer()
    glm_width = 32
    glm_config = GlmConfig(
        vocab_size=len(tokenizer),
        hidden_size=glm_width,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.pad_token_id,
    )
    transformer = CogView4Transformer2DModel(
        **_TRANSFORMER,
        text_embed_dim=glm_width,
        time_embed_dim=16,
        condition_dim=8,
        rope_axes_dim=(32, 32),
    )
    pipeline = CogView4Pipeline(
        tokenizer=tokenizer,
        text_encoder=GlmModel(glm_config),
        vae=_tiny_vae(_FLOW_LATENT_CHANNELS),
        transformer=transformer,
        scheduler=_flow_match_scheduler(),
    )
    pipeline.save_pretrained(str(target), safe_serialization=True)


# Wan 2.2: the Wan VAE has 16 latent channels (8x space, 4x time); the Wan 2.2 VAE of TI2V-5B
# has 48 (16x space: 8x from its blocks, 2x from its pixel patches). InvokeAI makes the noise
# with those channel counts and scales from the variant, whatever the folder's configs say.
_WAN_LATENT_CHANNELS = 16
_WAN22_LATENT_CHANNELS = 48
_UMT5_WIDTH = 32
_WAN_HEADS, _WAN_HEAD_WIDTH = 2, 12
_WAN_INNER_WIDTH = _WAN_HEADS * _WAN_HEAD_WIDTH


def _tiny_wan_transformer(in_channels: int, out_channels: int) -> Any:
    """One layer, 2 heads of 12 (rotary positions split 4/4/4 over time, height and width)."""
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=_WAN_HEADS,
        attention_head_dim=_WAN_HEAD_WIDTH,
        in_channels=in_channels,
        out_channels=out_channels,
        text_dim=_UMT5_WIDTH,
        freq_dim=16,
        ffn_dim=32,
        num_layers=1,
        rope_max_seq_len=32,
    )


def _tiny_wan_vae(z_dim: int) -> Any:
    """The Wan VAE (16 channels) or, with 48, the Wan 2.2 VAE with its 2x2 pixel patches."""
    from diffusers import AutoencoderKLWan

    wan22 = z_dim == _WAN22_LATENT_CHANNELS
    return AutoencoderKLWan(
        base_dim=8,
        z_dim=z_dim,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
        is_residual=wan22,
        in_channels=12 if wan22 else 3,
        out_channels=12 if wan22 else 3,
        patch_size=2 if wan22 else None,
        scale_factor_spatial=16 if wan22 else 8,
    )


def _tiny_umt5() -> tuple[Any, Any]:
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    tokenizer = T5Tokenizer(vocab=_character_pieces(), extra_ids=0)
    config = UMT5Config(
        vocab_size=len(tokenizer),
        d_model=_UMT5_WIDTH,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return tokenizer, UMT5EncoderModel(config)


def _wan_scheduler(flow_shift: float) -> Any:
    """Wan 2.2's own: UniPC on flow sigmas (InvokeAI loads it from ``scheduler/``)."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=flow_shift,
        solver_order=2,
        solver_type="bh2",
        final_sigmas_type="zero",
    )


def _build_wan_a14b(target: Path, *, image_to_video: bool) -> None:
    """Wan 2.2 A14B: two experts (``transformer/`` and ``transformer_2/``) and the Wan VAE.

    InvokeAI reads the variant from the folder: a ``transformer_2/`` makes it A14B, and the
    transformer's ``in_channels`` tells text-to-video (16) from image-to-video (36: the noise,
    the reference image's 16 latent channels and a 4-channel first-frame mask).
    """
    import torch
    from diffusers import WanImageToVideoPipeline, WanPipeline

    torch.manual_seed(0)
    channels = _WAN_LATENT_CHANNELS
    in_channels = 2 * channels + 4 if image_to_video else channels
    tokenizer, text_encoder = _tiny_umt5()
    pipeline_class = WanImageToVideoPipeline if image_to_video else WanPipeline
    pipeline = pipeline_class(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=_tiny_wan_vae(channels),
        scheduler=_wan_scheduler(3.0),
        transformer=_tiny_wan_transformer(in_channels, channels),
        transformer_2=_tiny_wan_transformer(in_channels, channels),
        boundary_ratio=0.9 if image_to_video else 0.875,
    )
    pipeline.save_pretrained(str(target), safe_serialization=True)


def _build_wan_ti2v(target: Path) -> None:
    """Wan 2.2 TI2V-5B: one transformer on the 48-channel Wan 2.2 VAE's latents."""
    import torch
    from diffusers import WanPipeline

    torch.manual_seed(0)
    channels = _WAN22_LATENT_CHANNELS
    tokenizer, text_encoder = _tiny_umt5()
    pipeline = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=_tiny_wan_vae(channels),
        scheduler=_wan_scheduler(5.0),
        transformer=_tiny_wan_transformer(channels, channels),
        expand_timesteps=True,
    )
    pipeline.save_pretrained(str(target), safe_serialization=True)


def _build_wan_lora(target: Path, seed: int) -> None:
    """A PEFT-format LoRA on the tiny Wan transformer's self-attention projections.

    InvokeAI takes a file as a Wan LoRA by its keys (``blocks.N.attn1.to_q.lora_A.weight``
    and the like); the inner width (24, neither A14B's 5120 nor TI2V-5B's 3072) leaves its
    variant unrecorded, so it may be applied to any Wan transformer of that width.
    """
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    rank, inner = 4, _WAN_INNER_WIDTH
    tensors = {}
    for projection in ("to_q", "to_k", "to_v", "to_out.0"):
        key = f"transformer.blocks.0.attn1.{projection}"
        tensors[f"{key}.lora_A.weight"] = torch.randn(rank, inner) * 0.1
        tensors[f"{key}.lora_B.weight"] = torch.randn(inner, rank) * 0.1
    save_file(tensors, str(target))


def build(folder: Path) -> None:
    """Build every tiny model into ``folder`` and mark it complete."""
    folder.mkdir(parents=True, exist_ok=True)
    _build_sd1(folder / SD1_NAME)
    _build_sdxl(folder / SDXL_NAME, folder / SDXL_VAE_NAME)
    _build_sd1_lora(folder / SD1_LORA_FILE)
    _build_controlnet(folder / SD1_CONTROLNET_NAME, 768)
    _build_controlnet(folder / SDXL_CONTROLNET_NAME, 2048, **_SDXL_ADDED_EMBEDDINGS)
    _build_upscaler(folder / UPSCALER_FILE)
    _build_image_encoder(folder / IMAGE_ENCODER_DIR)
    _build_sd1_ip_adapter(folder / SD1_IP_ADAPTER_FILE)
    _build_sd3(folder / SD3_NAME)
    _build_cogview4(folder / COGVIEW4_NAME)
    _build_wan_a14b(folder / WAN_T2V_NAME, image_to_video=False)
    _build_wan_a14b(folder / WAN_I2V_NAME, image_to_video=True)
    _build_wan_ti2v(folder / WAN_TI2V_NAME)
    _build_wan_lora(folder / WAN_LORA_HIGH_FILE, seed=1)
    _build_wan_lora(folder / WAN_LORA_LOW_FILE, seed=2)
    _build_wan_lora(folder / WAN_CONCEPT_LORA_FILE, seed=3)
    (folder / READY).write_text(RECIPE_VERSION)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "build":
        sys.exit("usage: python tiny_models.py build <folder>")
    build(Path(sys.argv[2]))
