"""Parity fixtures for LoRA adapters on the tiny VACE transformer (models/tiny/transformer):
tiny random adapters in the layouts published for Wan, applied by diffusers'
`WanVACEPipeline.load_lora_weights` + `set_adapters` (the Wan / ComfyUI names go through
diffusers' own Wan LoRA converter, which `load_lora_weights` applies), writing

    models/fixtures/lora/
        peft.safetensors     diffusers / PEFT names (transformer.blocks.N.attn1.to_q.lora_A.weight),
                             main and VACE blocks, the output projection
        wan.safetensors      original Wan / ComfyUI names (diffusion_model.blocks.N.self_attn.q.lora_down
                             / lora_up / alpha) with diff_b bias deltas, time projection, head
        peft_alpha.safetensors  diffusers / PEFT names saved by `save_lora_weights` with the adapter's
                             LoraConfig in the metadata (lora_alpha, alpha_pattern), rank 4
        wan_ab.safetensors   original names with lora_A / lora_B, no alpha, head.head.diff (+ diff_b)
        cases.json           case -> [[adapter file, strength], ...]
        io.safetensors       latents, timestep, text_embeddings, control, control_scale,
                             output_base and output_<case> for each case

    python models/reference/lora.py      (diffusers loads LoRAs through `peft`: pip install peft
                                         into the reference venv, which does not bring it)
"""
import json
import shutil
from pathlib import Path

import torch
from diffusers import WanVACEPipeline
from safetensors.torch import save_file

from common import FIXTURES, save_io, seeded

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tiny"
OUT = FIXTURES / "lora"

CASES = {
    "peft": [("peft", 0.8)],
    "wan": [("wan", 1.5)],
    "wan_ab": [("wan_ab", 1.0)],
    "peft_alpha": [("peft_alpha", 1.2)],
    "stacked": [("peft", 0.7), ("wan", -0.6)],
}


def pair(gen, out_features, in_features, rank, scale=0.3):
    down = torch.randn(rank, in_features, generator=gen) * scale
    up = torch.randn(out_features, rank, generator=gen) * scale
    return down, up


def linear_shapes(transformer):
    """diffusers module name -> (out, in) of every Linear."""
    return {name: (m.out_features, m.in_features) for name, m in transformer.named_modules()
            if isinstance(m, torch.nn.Linear)}


def peft_adapter(transformer, gen):
    shapes = linear_shapes(transformer)
    state = {}
    for name, (o, i) in shapes.items():
        wanted = (
            (name.startswith(("blocks.", "vace_blocks.")) and (".attn1." in name or ".attn2." in name or ".ffn." in name
                                                               or name.endswith((".proj_in", ".proj_out"))))
            or name == "proj_out"
        )
        if not wanted:
            continue
        down, up = pair(gen, o, i, 4)
        state[f"transformer.{name}.lora_A.weight"] = down
        state[f"transformer.{name}.lora_B.weight"] = up
    return state


WAN_BLOCK = [("self_attn.q", "attn1.to_q"), ("self_attn.k", "attn1.to_k"), ("self_attn.v", "attn1.to_v"),
             ("self_attn.o", "attn1.to_out.0"), ("cross_attn.q", "attn2.to_q"), ("cross_attn.k", "attn2.to_k"),
             ("cross_attn.v", "attn2.to_v"), ("cross_attn.o", "attn2.to_out.0"), ("ffn.0", "ffn.net.0.proj"),
             ("ffn.2", "ffn.net.2")]


def wan_adapter(transformer, gen):
    """lora_down / lora_up / alpha (rank 4, alpha 2) and diff_b on every module (diffusers needs a
    bias delta on every module of an adapter once one has it, as published files carry them)."""
    shapes = linear_shapes(transformer)
    state = {}
    for block in range(transformer.config.num_layers):
        for original, ours in WAN_BLOCK:
            o, i = shapes[f"blocks.{block}.{ours}"]
            down, up = pair(gen, o, i, 4)
            key = f"diffusion_model.blocks.{block}.{original}"
            state[f"{key}.lora_down.weight"] = down
            state[f"{key}.lora_up.weight"] = up
            state[f"{key}.alpha"] = torch.tensor(2.0)
            state[f"{key}.diff_b"] = torch.randn(o, generator=gen) * 0.1
    o, i = shapes["condition_embedder.time_proj"]
    down, up = pair(gen, o, i, 4)
    state["diffusion_model.time_projection.1.lora_down.weight"] = down
    state["diffusion_model.time_projection.1.lora_up.weight"] = up
    state["diffusion_model.time_projection.1.diff_b"] = torch.randn(o, generator=gen) * 0.1
    o, i = shapes["proj_out"]
    down, up = pair(gen, o, i, 4)
    state["diffusion_model.head.head.lora_down.weight"] = down
    state["diffusion_model.head.head.lora_up.weight"] = up
    state["diffusion_model.head.head.diff_b"] = torch.randn(o, generator=gen) * 0.1
    return state


def wan_ab_adapter(transformer, gen):
    """lora_A / lora_B under diffusion_model. (rank 2, no alpha) with diff_b, head.head.diff + diff_b."""
    shapes = linear_shapes(transformer)
    state = {}
    for block in range(transformer.config.num_layers):
        for original, ours in WAN_BLOCK[4:]:
            o, i = shapes[f"blocks.{block}.{ours}"]
            down, up = pair(gen, o, i, 2)
            key = f"diffusion_model.blocks.{block}.{original}"
            state[f"{key}.lora_A.weight"] = down
            state[f"{key}.lora_B.weight"] = up
            state[f"{key}.diff_b"] = torch.randn(o, generator=gen) * 0.05
    o, i = shapes["proj_out"]
    state["diffusion_model.head.head.diff"] = torch.randn(o, i, generator=gen) * 0.05
    state["diffusion_model.head.head.diff_b"] = torch.randn(o, generator=gen) * 0.05
    return state


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    pipe = WanVACEPipeline.from_pretrained(TINY, torch_dtype=torch.float32)
    transformer = pipe.transformer.eval()
    gen = seeded(2100)
    adapters = {
        "peft": peft_adapter(transformer, gen),
        "wan": wan_adapter(transformer, gen),
        "wan_ab": wan_ab_adapter(transformer, gen),
    }
    for name, state in adapters.items():
        save_file({k: v.contiguous() for k, v in state.items()}, str(OUT / f"{name}.safetensors"))
    # Alpha in the metadata, as diffusers' training scripts save it.
    state = {k.removeprefix("transformer."): v for k, v in peft_adapter(transformer, gen).items()
             if ".attn1." in k or k.startswith("transformer.proj_out")}
    modules = sorted({k.split(".lora_")[0] for k in state})
    WanVACEPipeline.save_lora_weights(
        OUT, transformer_lora_layers=state, weight_name="peft_alpha.safetensors",
        transformer_lora_adapter_metadata=dict(r=4, lora_alpha=6.0, target_modules=modules,
                                               alpha_pattern={"blocks.1.attn1.to_k": 2.0, "proj_out": 1.0}),
    )
    adapters["peft_alpha"] = state

    config = transformer.config
    latents = torch.randn(1, config.in_channels, 3, 8, 12, generator=gen)
    control = torch.randn(1, config.vace_in_channels, 3, 8, 12, generator=gen)
    text = torch.randn(1, 7, config.text_dim, generator=gen)
    timestep = torch.tensor([523.25])
    scale = torch.tensor([0.9])
    io = dict(latents=latents, timestep=timestep, text_embeddings=text, control=control, control_scale=scale)

    def run():
        full_scale = scale.expand(len(config.vace_layers)).contiguous()
        with torch.no_grad():
            return transformer(latents, timestep, text, control_hidden_states=control,
                               control_hidden_states_scale=full_scale, return_dict=False)[0]

    io["output_base"] = run()
    for name in adapters:
        pipe.load_lora_weights(str(OUT / f"{name}.safetensors"), adapter_name=name)
    for case, stack in CASES.items():
        pipe.set_adapters([a for a, _ in stack], [s for _, s in stack])
        io[f"output_{case}"] = run()
        change = (io[f"output_{case}"] - io["output_base"]).abs().max()
        print(f"{case}: max |lora - base| {change:.3f}")
    pipe.disable_lora()
    assert torch.equal(run(), io["output_base"])
    save_io(OUT, io)
    cases = {case: [[f"{a}.safetensors", s] for a, s in stack] for case, stack in CASES.items()}
    (OUT / "cases.json").write_text(json.dumps(cases, indent=2) + "\n")


if __name__ == "__main__":
    main()
