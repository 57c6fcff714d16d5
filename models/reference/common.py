"""Shared helpers for the fixture generators: every generator runs the reference
implementation (diffusers / transformers) on a tiny random config and writes

    models/fixtures/<part>/<case>/           a model folder as the reference saves it
        config.json, *.safetensors           (save_pretrained)
        io.safetensors                       inputs and reference outputs, f32

Run a generator with the reference venv's python (shared/scripts/reference-venv).
"""
from pathlib import Path

import torch
from safetensors.torch import save_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def case_dir(part: str, case: str) -> Path:
    path = FIXTURES / part / case
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_io(directory: Path, tensors: dict) -> None:
    """Writes inputs and reference outputs as contiguous f32 (ids stay int64)."""
    out = {}
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if t.is_floating_point():
            t = t.to(torch.float32)
        out[name] = t
    save_file(out, str(directory / "io.safetensors"))


def seeded(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
