"""Parity fixtures for the Wan / Wan-VACE transformer (diffusers `WanTransformer3DModel`,
`WanVACETransformer3DModel`), text-to-video path only.

Every case is a tiny random model saved with `save_pretrained`, plus `io.safetensors`:
    latents [B,C,F,H,W], timestep [B], text_embeddings [B,L,text_dim],
    (VACE only) control [B,Cv,Fc,H,W] and control_scale [len(vace_layers)] or [1],
    output [B,out,F',H',W'].
One case also gets `original/diffusion_pytorch_model.safetensors`: the same weights under the
original Wan release names, checked here against diffusers' own original->diffusers converter.
The published checkpoints' tensor sets are in models/manifests (manifests.py).
"""
import json

import torch
from diffusers import WanTransformer3DModel, WanVACETransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from safetensors.torch import save_file

from common import FIXTURES, case_dir, save_io, seeded

PART = "transformer"

CASES = [
    # heads 2 x 12 (RoPE split t/h/w = 4/4/4), VACE at [0, 2] of 3, cross-attn norm, batch 2 (CFG).
    dict(
        name="vace_h2_d12_l3",
        vace=True,
        config=dict(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4,
            out_channels=4, text_dim=20, freq_dim=16, ffn_dim=40, num_layers=3, cross_attn_norm=True,
            rope_max_seq_len=64, vace_layers=[0, 2], vace_in_channels=8,
        ),
        latents=(2, 4, 3, 6, 10), text_len=7, control_frames=3,
        timestep=[999.0, 523.25], scale=[0.7, 1.3], original_names=True,
    ),
    # heads 3 x 16 (split 8/4/4), VACE at every layer with one scale broadcast, no cross-attn norm,
    # out_channels null (= in_channels), one frame.
    dict(
        name="vace_h3_d16_l2",
        vace=True,
        config=dict(
            patch_size=(1, 2, 2), num_attention_heads=3, attention_head_dim=16, in_channels=5,
            out_channels=None, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=False,
            rope_max_seq_len=32, vace_layers=[0, 1], vace_in_channels=12,
        ),
        latents=(1, 5, 1, 10, 6), text_len=5, control_frames=1,
        timestep=[250.5], scale=[0.5],
    ),
    # heads 4 x 10 (split 6/2/2), VACE at [0, 1, 3] of 4 with a negative scale, patch (2, 2, 1)
    # with odd sizes the patch does not divide, a control clip shorter than the latents (padded).
    dict(
        name="vace_h4_d10_l4",
        vace=True,
        config=dict(
            patch_size=(2, 2, 1), num_attention_heads=4, attention_head_dim=10, in_channels=6,
            out_channels=3, text_dim=24, freq_dim=20, ffn_dim=56, num_layers=4, cross_attn_norm=True,
            rope_max_seq_len=40, vace_layers=[0, 1, 3], vace_in_channels=10,
        ),
        latents=(2, 6, 5, 7, 3), text_len=9, control_frames=2,
        timestep=[37.0, 811.75], scale=[1.0, -0.5, 2.0],
    ),
    # Plain Wan (no VACE): heads 3 x 8 (split 4/2/2), two layers, batch 2, two frames.
    dict(
        name="plain_h3_d8_l2",
        vace=False,
        config=dict(
            patch_size=(1, 2, 2), num_attention_heads=3, attention_head_dim=8, in_channels=4,
            out_channels=4, text_dim=16, freq_dim=24, ffn_dim=48, num_layers=2, cross_attn_norm=True,
            rope_max_seq_len=32,
        ),
        latents=(2, 4, 2, 6, 6), text_len=6,
        timestep=[999.0, 1.5],
    ),
    # Plain Wan with head dim 4: the height/width RoPE parts are empty (split 4/0/0).
    dict(
        name="plain_h4_d4_l1",
        vace=False,
        config=dict(
            patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=4, in_channels=3,
            out_channels=2, text_dim=12, freq_dim=9, ffn_dim=20, num_layers=1, cross_attn_norm=False,
            rope_max_seq_len=16,
        ),
        latents=(1, 3, 3, 4, 6), text_len=4,
        timestep=[640.0],
    ),
]


def randomise_constant_parameters(model: torch.nn.Module) -> None:
    """Norm weights start at ones and LayerNorm biases at zeros: perturb them so they matter."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if torch.all(param == param.flatten()[0]):
                noise = torch.randn_like(param)
                param.copy_(1.0 + 0.2 * noise if name.endswith("weight") else 0.1 * noise)


# diffusers name fragment -> original Wan name fragment (inverse of diffusers' converter map).
DIFFUSERS_TO_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1.", "self_attn."),
    ("attn2.", "cross_attn."),
    (".to_out.0.", ".o."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    ("ffn.net.0.proj", "ffn.0"),
    ("ffn.net.2", "ffn.2"),
    (".norm2.", ".norm3."),
    (".proj_in.", ".before_proj."),
]


def original_name(name: str) -> str:
    if name == "scale_shift_table":
        return "head.modulation"
    if name.startswith("proj_out."):
        return "head.head." + name[len("proj_out."):]
    for new, old in DIFFUSERS_TO_ORIGINAL:
        name = name.replace(new, old)
    name = name.replace(".scale_shift_table", ".modulation")
    if name.startswith("vace_blocks."):
        name = name.replace(".proj_out.", ".after_proj.")
    return name


def save_original_names(model: torch.nn.Module, directory) -> None:
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    original = {original_name(k): v for k, v in state.items()}
    # diffusers' own converter must map the original names back exactly.
    back = convert_wan_transformer_to_diffusers(dict(original))
    assert set(back) == set(state), sorted(set(back) ^ set(state))
    for k, v in back.items():
        assert torch.equal(v, state[k]), k
    out = directory / "original"
    out.mkdir(exist_ok=True)
    save_file(original, str(out / "diffusion_pytorch_model.safetensors"))


def main() -> None:
    for index, case in enumerate(CASES):
        gen = seeded(1000 + index)
        cls = WanVACETransformer3DModel if case["vace"] else WanTransformer3DModel
        model = cls(**case["config"]).eval()
        randomise_constant_parameters(model)

        batch = case["latents"][0]
        latents = torch.randn(case["latents"], generator=gen)
        timestep = torch.tensor(case["timestep"], dtype=torch.float32)
        text = torch.randn(batch, case["text_len"], case["config"]["text_dim"], generator=gen)
        io = dict(latents=latents, timestep=timestep, text_embeddings=text)
        kwargs = {}
        if case["vace"]:
            _, _, _, h, w = case["latents"]
            control_shape = (batch, case["config"]["vace_in_channels"], case["control_frames"], h, w)
            control = torch.randn(control_shape, generator=gen)
            scale = torch.tensor(case["scale"], dtype=torch.float32)
            # diffusers wants one scale per VACE layer; a single value is broadcast by our API.
            full_scale = scale.expand(len(case["config"]["vace_layers"])).contiguous()
            kwargs = dict(control_hidden_states=control, control_hidden_states_scale=full_scale)
            io.update(control=control, control_scale=scale)

        with torch.no_grad():
            output = model(latents, timestep, text, return_dict=False, **kwargs)[0]
        io["output"] = output

        directory = case_dir(PART, case["name"])
        model.save_pretrained(directory)
        save_io(directory, io)
        if case.get("original_names"):
            save_original_names(model, directory)
        config = json.loads((directory / "config.json").read_text())
        print(f"{case['name']}: output {tuple(output.shape)}, |out| max {output.abs().max():.3f}, "
              f"vace_layers {config.get('vace_layers')}")


if __name__ == "__main__":
    main()
