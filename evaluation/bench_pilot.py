"""PILOT's cost against the same loop with the optimisation off.

    python -m evaluation.bench pilot [--size small|tiny|sd15] [--steps 20 --op-interval 5 --gradient-steps 5]

Both runs use the same random-weight models, seed, image and mask and differ only in
``num_gradient_steps`` (K vs 0). The plain loop costs N CFG forwards (batch 2); PILOT adds
γ·N/τ·K gradient steps, each one conditional forward (batch 1) and its backward (≈ 2
forwards), so the time ratio should stay under 1 + 3·γ·K/τ if there are no hidden passes.
Memory: CUDA peak allocated during the call, or on CPU the growth of the process's peak RSS
during the first call; each variant runs in its own spawned process so peaks do not mix.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _run_variant(size: str, device: str, gradient_steps: int, steps: int, op_interval: int, gamma: float,
                 repeats: int, checkpointing: bool, threads: int) -> dict:
    """Build, then time ``repeats`` calls; memory from the first call. Runs in a child process."""
    torch.set_num_threads(threads)
    from evaluation.random_sd import SIZES, random_sd_components
    from pixperfect.pilot import PilotPipeline

    dev = torch.device(device)
    with tempfile.TemporaryDirectory() as tmp:
        pipe = PilotPipeline(**random_sd_components(Path(tmp), size)).to(dev)
    if dev.type == "cuda":
        pipe.to(dtype=torch.float16)  # the latent and its momentum stay float32 inside PILOT
    pipe.set_progress_bar_config(disable=True)
    res = SIZES[size]["resolution"]
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, res, res, generator=g)
    mask = torch.zeros(1, 1, res, res)
    mask[..., res // 4: 3 * res // 4, res // 4: 3 * res // 4] = 1

    def call():
        pipe("a photo of a cat", image, mask, num_inference_steps=steps, op_interval=op_interval, gamma=gamma,
             num_gradient_steps=gradient_steps, gradient_checkpointing=checkpointing, output_type="pt",
             generator=torch.Generator(device=dev).manual_seed(0))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        base = _rss_mb()
    t0 = time.perf_counter()
    call()
    first_ms = (time.perf_counter() - t0) * 1000
    if dev.type == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return {"ms": statistics.median(times) if times else first_ms, "peak_mb": peak_mb,
            "unet_params_m": sum(p.numel() for p in pipe.unet.parameters()) / 1e6}


def bench_pilot(device: torch.device, repeats: int, size: str = "small", steps: int = 20, op_interval: int = 5,
                gradient_steps: int = 5, gamma: float = 1.0, checkpointing: bool = False) -> dict:
    from evaluation.bench import device_name, emit

    ctx = mp.get_context("spawn")
    common = (size, str(device), steps, op_interval, gamma, repeats, checkpointing, torch.get_num_threads())
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        off = pool.apply(_run_variant, (common[0], common[1], 0, *common[2:]))
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        on = pool.apply(_run_variant, (common[0], common[1], gradient_steps, *common[2:]))
    target = 1 + 3 * gamma * gradient_steps / op_interval
    record = {"bench": "pilot", "device": device_name(device), "size": size, "unet_params_m": round(on["unet_params_m"], 1),
              "steps": steps, "gamma": gamma, "op_interval": op_interval, "gradient_steps": gradient_steps,
              "gradient_checkpointing": checkpointing,
              "ms_optimisation_off": round(off["ms"], 1), "ms_pilot": round(on["ms"], 1),
              "time_ratio": round(on["ms"] / off["ms"], 3), "time_ratio_target": round(target, 3),
              "peak_mb_optimisation_off": round(off["peak_mb"], 1), "peak_mb_pilot": round(on["peak_mb"], 1),
              "memory": "cuda max_memory_allocated growth" if device.type == "cuda" else "peak RSS growth (CPU)"}
    emit(**record)
    return record
