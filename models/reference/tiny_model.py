"""Tiny Wan2.1-VACE model folders with random weights, in the published diffusers layout
(model_index.json, transformer/, vae/, text_encoder/, tokenizer/, scheduler/).

    python models/reference/tiny_model.py          -> models/tiny  (the model every command
                                                      and test can run on a fresh machine)

The weights are random: the model produces noise. It exists so that the whole path (loading,
pipeline, tasks, hosts) runs anywhere; see README.md for real weights.
"""
import json
from pathlib import Path

import torch
from diffusers import (AutoencoderKLWan, UniPCMultistepScheduler, WanVACEPipeline,
                       WanVACETransformer3DModel)
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import T5TokenizerFast, UMT5Config, UMT5EncoderModel

ROOT = Path(__file__).resolve().parents[1]

CORPUS = """a harbour at dawn, the camera pans slowly over fishing boats and gulls
waves breaking on a rocky shore at sunset, warm light, spray in the wind
a city street at night with neon signs, rain on the asphalt, people with umbrellas
a forest path in autumn, leaves falling, soft fog between the trees
a close-up of a cat sleeping on a windowsill, the curtain moving in the breeze
blurry, low quality, static, overexposed, watermark, text, distorted hands
""".split("\n")


def build_tokenizer(vocab_size: int = 300) -> T5TokenizerFast:
    """A small SentencePiece-style Unigram tokenizer shaped like umT5's tokenizer.json."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence(
        [normalizers.Nmt(), normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>")
    tok.train_from_iterator([line for line in CORPUS if line] * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0)


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Random weights everywhere, norms included, so that every parameter matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and ("norm" in name or "gamma" in name or name.endswith("scale_shift_table")):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel() if p.ndim > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=gen) / max(fan_in, 1) ** 0.5)


def build_pipeline(config: dict, seed: int = 0) -> WanVACEPipeline:
    """config: dim_heads, head_dim, layers, ffn, vace_layers, text_dim, text_layers, text_heads,
    vae_base, vae_mult, vae_res, vae_temporal, flow_shift, solver_order."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=config["text_dim"], d_kv=8, d_ff=2 * config["text_dim"],
        num_layers=config["text_layers"], num_heads=config["text_heads"],
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0))
    z_dim = 16
    vae = AutoencoderKLWan(
        base_dim=config["vae_base"], z_dim=z_dim, dim_mult=config["vae_mult"],
        num_res_blocks=config["vae_res"], temperal_downsample=config["vae_temporal"],
        latents_mean=[0.1 * i - 0.8 for i in range(z_dim)],
        latents_std=[0.5 + 0.1 * i for i in range(z_dim)])
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=config["heads"], attention_head_dim=config["head_dim"],
        in_channels=z_dim, out_channels=z_dim, text_dim=config["text_dim"], freq_dim=32,
        ffn_dim=config["ffn"], num_layers=config["layers"], cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, vace_layers=config["vace_layers"],
        vace_in_channels=2 * z_dim + 64)
    for i, module in enumerate((text_encoder, vae, transformer)):
        randomise(module, seed + i)
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
        flow_shift=config["flow_shift"], solver_order=config["solver_order"])
    pipe = WanVACEPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                           scheduler=scheduler, transformer=transformer)
    return pipe.to(torch.float32)


TINY = {"heads": 2, "head_dim": 16, "layers": 3, "ffn": 64, "vace_layers": [0, 2], "text_dim": 32,
        "text_layers": 2, "text_heads": 2, "vae_base": 8, "vae_mult": [1, 2, 2, 2], "vae_res": 1,
        "vae_temporal": [False, True, True], "flow_shift": 3.0, "solver_order": 2}


def main() -> None:
    out = ROOT / "tiny"
    build_pipeline(TINY).save_pretrained(out, safe_serialization=True)
    (out / "README.md").write_text(
        "Tiny Wan2.1-VACE model with RANDOM weights, made by models/reference/tiny_model.py.\n"
        "It produces noise: it exists so that every command and test runs on a fresh machine.\n")
    print(json.dumps({p.name: p.stat().st_size for p in out.rglob("*") if p.is_file()}, indent=1))


if __name__ == "__main__":
    main()
