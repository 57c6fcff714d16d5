"""Fixtures for the flow-matching schedulers (diffusers `UniPCMultistepScheduler` with flow sigmas,
`FlowMatchEulerDiscreteScheduler`).

A scheduler has no weights: each case folder holds `scheduler_config.json` (`save_config`) and
`io.safetensors` with

    num_inference_steps, start_index      int64 scalars
    bf16_model_output                     int64 scalar: 1 if the model output is cast to bf16
                                          (as a bf16 transformer's output is in the Wan pipelines)
    timesteps                             after set_timesteps (int64 for UniPC, f32 for Euler)
    sigmas                                after set_timesteps, f32
    sample_0                              initial sample [1, 4, 2, 3, 3]
    noise                                 [steps, 1, 4, 2, 3, 3]
    samples                               the sample after every step, [steps, 1, 4, 2, 3, 3]

The sampling loop is a closed loop: the 'model output' at step i is `0.5 * sample + noise[i]`.
It runs over `timesteps[start_index:]`, passing each timestep to `step` as a pipeline does
(start_index > 0 is how image-to-video / video-to-video pipelines start mid-schedule).
Cases whose samples are not finite record reference configurations that produce NaN/inf
(e.g. bh1 with final_sigmas_type="zero"): the implementation must reject those.
"""
import shutil

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from common import FIXTURES, case_dir, save_io, seeded

SHAPE = (1, 4, 2, 3, 3)

WAN = dict(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0)

# name -> (config overrides, num_inference_steps, extra: start_index, bf16 model output)
UNIPC_CASES = {
    # The published Wan2.1 configuration (480p shift), 50 steps.
    "unipc_wan_480p_50": (dict(), 50, {}),
    "unipc_wan_720p_10": (dict(flow_shift=5.0), 10, {}),
    "unipc_order1_shift1_10": (dict(solver_order=1, flow_shift=1.0), 10, {}),
    "unipc_order3_shift5_10": (dict(solver_order=3, flow_shift=5.0), 10, {}),
    "unipc_order3_bh1_sigma_min_10": (
        dict(solver_order=3, flow_shift=5.0, solver_type="bh1", final_sigmas_type="sigma_min"), 10, {}),
    "unipc_order2_bh1_no_lof_sigma_min_5": (
        dict(solver_type="bh1", lower_order_final=False, final_sigmas_type="sigma_min"), 5, {}),
    "unipc_order2_disable_corrector0_5": (dict(flow_shift=5.0, disable_corrector=[0]), 5, {}),
    "unipc_order3_bh1_disable_corrector_50": (
        dict(solver_order=3, solver_type="bh1", final_sigmas_type="sigma_min", disable_corrector=[0, 2, 7]),
        50, {}),
    "unipc_order3_no_lof_sigma_min_2": (
        dict(solver_order=3, flow_shift=1.0, lower_order_final=False, final_sigmas_type="sigma_min"), 2, {}),
    "unipc_order2_1": (dict(), 1, {}),
    "unipc_order3_shift1_2": (dict(solver_order=3, flow_shift=1.0), 2, {}),
    "unipc_order4_10": (dict(solver_order=4), 10, {}),
    "unipc_shift2_7_train500_5": (dict(flow_shift=2.7, num_train_timesteps=500), 5, {}),
    "unipc_shift_terminal_10": (dict(shift_terminal=0.1, final_sigmas_type="sigma_min"), 10, {}),
    "unipc_bf16_model_output_10": (dict(), 10, dict(bf16=True)),
    "unipc_start_index3_10": (dict(solver_order=3), 10, dict(start_index=3)),
    # Reference configurations that end in NaN/inf: must be rejected.
    "unipc_nonfinite_bh1_zero_5": (dict(solver_type="bh1"), 5, {}),
    "unipc_nonfinite_no_lof_zero_5": (dict(lower_order_final=False), 5, {}),
    "unipc_nonfinite_order3_no_lof_sigma_min_3": (
        dict(solver_order=3, lower_order_final=False, final_sigmas_type="sigma_min"), 3, {}),
}

EULER_CASES = {
    "euler_shift1_10": (dict(), 10, {}),
    "euler_shift3_50": (dict(shift=3.0), 50, {}),
    "euler_shift5_1": (dict(shift=5.0), 1, {}),
    "euler_shift5_2": (dict(shift=5.0), 2, {}),
    "euler_shift2_7_train500_5": (dict(shift=2.7, num_train_timesteps=500), 5, {}),
    "euler_shift_terminal_10": (dict(shift=3.0, shift_terminal=0.05), 10, {}),
    "euler_karras_10": (dict(shift=3.0, use_karras_sigmas=True), 10, {}),
    "euler_exponential_10": (dict(shift=3.0, use_exponential_sigmas=True), 10, {}),
    "euler_invert_sigmas_5": (dict(shift=3.0, invert_sigmas=True), 5, {}),
    "euler_bf16_model_output_5": (dict(shift=5.0), 5, dict(bf16=True)),
    "euler_start_index2_10": (dict(shift=3.0), 10, dict(start_index=2)),
}


def run_case(name, scheduler, steps, extra, seed):
    directory = case_dir("scheduler", name)
    scheduler.save_config(directory)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps.clone()
    sigmas = scheduler.sigmas.clone()
    start = extra.get("start_index", 0)
    bf16 = extra.get("bf16", False)

    generator = seeded(seed)
    sample = torch.randn(SHAPE, generator=generator)
    noise = torch.randn((len(timesteps) - start,) + SHAPE, generator=generator)
    sample_0 = sample.clone()
    samples = []
    for i, t in enumerate(timesteps[start:]):
        model_output = 0.5 * sample + noise[i]
        if bf16:
            model_output = model_output.to(torch.bfloat16)
        sample = scheduler.step(model_output, t, sample, return_dict=False)[0]
        samples.append(sample.float())
    samples = torch.stack(samples)

    # UniPC's timesteps are int64 and Euler's f32: save_io keeps both exactly.
    save_io(directory, dict(
        num_inference_steps=torch.tensor(steps, dtype=torch.int64),
        start_index=torch.tensor(start, dtype=torch.int64),
        bf16_model_output=torch.tensor(int(bf16), dtype=torch.int64),
        timesteps=timesteps,
        sigmas=sigmas,
        sample_0=sample_0,
        noise=noise,
        samples=samples,
    ))
    finite = bool(torch.isfinite(samples).all())
    print(f"{name}: {len(timesteps)} timesteps {timesteps.dtype}, finite={finite}")


def main():
    shutil.rmtree(FIXTURES / "scheduler", ignore_errors=True)
    seed = 0
    for name, (overrides, steps, extra) in UNIPC_CASES.items():
        run_case(name, UniPCMultistepScheduler(**{**WAN, **overrides}), steps, extra, seed)
        seed += 1
    for name, (overrides, steps, extra) in EULER_CASES.items():
        run_case(name, FlowMatchEulerDiscreteScheduler(**overrides), steps, extra, seed)
        seed += 1


if __name__ == "__main__":
    main()
