"""Tensor manifests of the published Wan2.1-VACE checkpoints, made without downloading them:
each part is instantiated from its published config on PyTorch's meta device (no memory) and
every tensor it would save is recorded with its dtype and shape.

    python models/reference/manifests.py     -> models/manifests/<repo>/<part>.json

The configs below are those of the diffusers-format repositories on the Hugging Face hub
(transformer values as in diffusers' scripts/convert_wan_to_diffusers.py; the VAE is
AutoencoderKLWan's defaults; the text encoder is google/umt5-xxl's encoder). Dtypes are the
ones the published files store.
"""
import json
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel, WanVACETransformer3DModel
from transformers import UMT5Config, UMT5EncoderModel

OUT = Path(__file__).resolve().parents[1] / "manifests"

TRANSFORMER_COMMON = {
    "added_kv_proj_dim": None, "attention_head_dim": 128, "cross_attn_norm": True, "eps": 1e-06,
    "freq_dim": 256, "image_dim": None, "in_channels": 16, "out_channels": 16,
    "patch_size": [1, 2, 2], "pos_embed_seq_len": None, "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 1024, "text_dim": 4096, "vace_in_channels": 96,
}
TRANSFORMERS = {
    "Wan2.1-VACE-1.3B-diffusers": {
        **TRANSFORMER_COMMON, "num_attention_heads": 12, "num_layers": 30, "ffn_dim": 8960,
        "vace_layers": [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28],
    },
    "Wan2.1-VACE-14B-diffusers": {
        **TRANSFORMER_COMMON, "num_attention_heads": 40, "num_layers": 40, "ffn_dim": 13824,
        "vace_layers": [0, 5, 10, 15, 20, 25, 30, 35],
    },
}
VAE = {
    "base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
    "temperal_downsample": [False, True, True], "dropout": 0.0,
    "latents_mean": [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                     0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921],
    "latents_std": [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160],
}
UMT5_XXL = {
    "vocab_size": 256384, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24,
    "num_decoder_layers": 24, "num_heads": 64, "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128, "dropout_rate": 0.1, "layer_norm_epsilon": 1e-06,
    "initializer_factor": 1.0, "feed_forward_proj": "gated-gelu", "is_encoder_decoder": True,
    "use_cache": True, "tie_word_embeddings": False, "scalable_attention": True,
    "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
}
DTYPE_NAMES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}


def manifest(model, config, dtype) -> dict:
    """Every tensor save_pretrained would write: parameters (tied ones once) and persistent buffers."""
    tensors = {name: [DTYPE_NAMES[dtype], list(p.shape)] for name, p in model.named_parameters()}
    persistent = model.state_dict(keep_vars=True)
    for name, b in model.named_buffers():
        if name in persistent:
            tensors[name] = [DTYPE_NAMES[dtype], list(b.shape)]
    return {"config": config, "tensors": dict(sorted(tensors.items()))}


def write(repo: str, part: str, content: dict) -> None:
    path = OUT / repo / f"{part}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=1) + "\n")
    print(f"{path}: {len(content['tensors'])} tensors")


def main() -> None:
    with torch.device("meta"):
        vae = AutoencoderKLWan(**VAE)
        text_encoder = UMT5EncoderModel(UMT5Config(**UMT5_XXL))
        for repo, config in TRANSFORMERS.items():
            write(repo, "transformer",
                  manifest(WanVACETransformer3DModel(**config), config, torch.float32))
            write(repo, "vae", manifest(vae, VAE, torch.float32))
            write(repo, "text_encoder",
                  manifest(text_encoder, {"architectures": ["UMT5EncoderModel"], **UMT5_XXL},
                           torch.bfloat16))
        # The plain text-to-video 1.3B: the same implementation without the VACE branch.
        plain = {k: v for k, v in TRANSFORMERS["Wan2.1-VACE-1.3B-diffusers"].items()
                 if not k.startswith("vace_")}
        write("Wan2.1-T2V-1.3B-Diffusers", "transformer",
              manifest(WanTransformer3DModel(**plain), plain, torch.float32))


if __name__ == "__main__":
    main()
