"""Benchmarks that print JSON lines. Compare ratios within one run; absolute times only from a GPU.

    python -m evaluation.bench refiner   # cmgan @512² b1: plain vs retain_memory/channels_last/bf16/fp16/compile (interleaved), pool=8, FLOP bound; cmgan_small train step
    python -m evaluation.bench losses    # tone-map fit+apply vs L1+LPIPS @512² b32; the fit's solve, QR vs SVD; pooling N=8 batched vs sequential
    python -m evaluation.bench simulation  # CPU img/s/core @512² with per-op breakdown; device VAE ms/img
    python -m evaluation.bench pilot     # PILOT vs optimisation off: time and peak-memory ratio (bench_pilot.py)
    python -m evaluation.bench prior     # the seam-prior refiner forward: push-pull fill vs the default CG fill
    python -m evaluation.bench data      # the demo's training batches with and without the decode cache (--experiment, --override)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in milliseconds (synchronising CUDA)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def emit(**record) -> None:
    print(json.dumps(record), flush=True)


def flop_rate(device: torch.device, repeats: int = 3) -> dict[str, float]:
    """Measured FLOP/s of a large fp32 matmul and a large 3×3 convolution: the machine's roofline."""
    a = torch.rand(2048, 2048, device=device)
    b = torch.rand(2048, 2048, device=device)
    ms = timed(lambda: a @ b, device, repeats)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).to(device).eval()
    x = torch.rand(1, 256, 128, 128, device=device)
    with torch.no_grad():
        ms_conv = timed(lambda: conv(x), device, repeats)
    conv_flops = 2 * 256 * 256 * 9 * 128 * 128
    return {"matmul_gflops": 2 * 2048**3 / ms / 1e6, "conv3x3_gflops": conv_flops / ms_conv / 1e6}


def count_flops(model, resolution: int, device: torch.device) -> int:
    """FLOPs of one forward at ``resolution``² (torch.utils.flop_counter; 2 per multiply-add).

    Counted at resolution/4 and scaled by 16: every counted op but the tiny global MLP is a
    convolution, linear in the number of pixels (64² → 128² gives 3.994×), and a forward at full
    size would cost as much as the benchmark itself on a CPU.
    """
    from torch.utils.flop_counter import FlopCounterMode

    r = resolution // 4
    x = torch.rand(1, 3, r, r, device=device)
    m = torch.zeros(1, 1, r, r, device=device)
    m[..., r // 4: 3 * r // 4, r // 4: 3 * r // 4] = 1
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, m)
    return counter.get_total_flops() * 16


def page_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing: Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def bench_refiner(device: torch.device, repeats: int, compile: bool = True, resolution: int = 512,
                  pool: int | None = None, only: list[str] | None = None, train_step: bool = True) -> None:
    """cmgan at 512², batch 1, through ``Refiner``: the plain fp32 forward and each speed option as a
    ratio of it; pooling (``pool``, default 8 on CUDA, skipped on CPU); FLOPs against the FLOP rate
    (the FLOP-bound time); then a cmgan_small training step (``train_step``).

    Interleaved in rounds, for machines shared with other jobs: each round measures the FLOP rate,
    times every variant once, and measures the rate again; a variant's ratio to plain and to the
    FLOP bound are taken within a round (the same load) and their median over rounds is reported,
    and so is the fastest forward against the fastest bound (``min_vs_bound``: the uncontended
    figure where other jobs come and go, e.g. a benchmark run under ``nice`` beside a training).
    "plain" runs with glibc's default allocator thresholds, "retain_memory" variants with freed
    memory kept for reuse (``pixperfect/inference/memory.py``)."""
    import copy

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from pixperfect import Refiner
    from pixperfect.inference.memory import retain_freed_memory
    from pixperfect.losses import L1Loss, NonSaturatingAdversarialLoss, RefinerLoss, SpaceLoss

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        big = compose(config_name="train", overrides=["model=cmgan"]).model
        small = compose(config_name="train", overrides=["model=cmgan_small"]).model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    pool = (8 if device.type == "cuda" else 0) if pool is None else pool

    torch.manual_seed(0)
    model = instantiate(big.refiner).to(device).eval()
    x = torch.rand(1, 3, resolution, resolution, device=device)
    m = torch.zeros(1, 1, resolution, resolution, device=device)
    m[..., resolution // 4: 3 * resolution // 4, resolution // 4: 3 * resolution // 4] = 1
    params_m = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    flops = count_flops(model, resolution, device)
    dev = device_name(device)

    variants = {"plain": {}, "retain_memory": {"retain_memory": True},
                "channels_last+retain_memory": {"channels_last": True, "retain_memory": True},
                "channels_last": {"channels_last": True}, "bf16": {"autocast": "bf16"},
                "fp16": {"autocast": "fp16"}, "channels_last+bf16": {"channels_last": True, "autocast": "bf16"},
                "compile": {"compile": True},
                "compile+channels_last+bf16": {"compile": True, "channels_last": True, "autocast": "bf16"}}
    if only:
        unknown = set(only) - set(variants)
        if unknown:
            raise SystemExit(f"error: --variants {sorted(unknown)} unknown; choose from {sorted(variants)}")
    elif device.type != "cuda":  # CPU: autocast is emulated (30–55× slower) and inductor compiles for minutes
        only = ["retain_memory", "channels_last", "channels_last+retain_memory"]
    if not compile:
        only = [k for k in (only or variants) if "compile" not in k]
    if only is not None:
        variants = {k: v for k, v in variants.items() if k == "plain" or k in only}  # plain: the reference
    refiners, first = {}, {}
    for name, options in variants.items():
        variant_model = model if not options.get("channels_last") else copy.deepcopy(model)
        options = {"retain_memory": False, **options}
        refiners[name] = Refiner(variant_model, **options)
        retain_freed_memory(options["retain_memory"])
        t0 = time.perf_counter()
        with torch.no_grad():
            refiners[name].forward(x, m)  # warm-up (and compilation)
        first[name] = (time.perf_counter() - t0) * 1000
    times = {name: [] for name in variants}
    faults = {name: 0 for name in variants}
    bounds = []
    # Default-threshold variants first; the heap they hand back to the OS is grown again by one
    # untimed forward before the first retaining variant (as in a process that always retains).
    order = sorted(refiners, key=lambda name: bool(refiners[name].retain_memory))
    for _ in range(repeats):
        rate = flop_rate(device)
        retaining = False
        for name in order:
            refiner = refiners[name]
            retain_freed_memory(bool(refiner.retain_memory))  # plain: glibc's default thresholds
            if refiner.retain_memory and not retaining:
                with torch.no_grad():
                    refiner.forward(x, m)
                retaining = True
            f0 = page_faults()
            with torch.no_grad():
                times[name].append(timed(lambda: refiner.forward(x, m), device, 1, warmup=0))  # noqa: B023
            faults[name] += page_faults() - f0
        after = flop_rate(device)  # the roofline under the same load as the round's forwards
        rate = {k: max(rate[k], after[k]) for k in rate}
        bounds.append(flops / (max(rate.values()) * 1e9) * 1000)
    retain_freed_memory(False)
    model.to(memory_format=torch.contiguous_format)

    def median_ratio(a: list[float], b: list[float]) -> float:
        return statistics.median(x / y for x, y in zip(a, b))

    for name in variants:
        emit(bench="refiner_forward", model="cmgan", resolution=resolution, batch=1, variant=name,
             ms=round(statistics.median(times[name]), 2), ms_min=round(min(times[name]), 2),
             ratio_vs_plain=round(median_ratio(times[name], times["plain"]), 3),
             vs_flop_bound=round(median_ratio(times[name], bounds), 3),
             min_vs_bound=round(min(times[name]) / min(bounds), 3),
             page_faults_per_forward=round(faults[name] / repeats), first_call_ms=round(first[name], 1),
             params_M=params_m, device=dev)
    vs_bound = {name: median_ratio(times[name], bounds) for name in variants}
    best = min(vs_bound, key=vs_bound.get)
    bound_ms = statistics.median(bounds)
    emit(bench="refiner_flops", model="cmgan", resolution=resolution, gflops=round(flops / 1e9, 2),
         flop_rate_gflops_per_s=round(flops / bound_ms / 1e6, 1), flop_bound_ms=round(bound_ms, 2),
         flop_bound_ms_per_round=[round(b) for b in bounds], plain_vs_bound=round(vs_bound["plain"], 3),
         best_variant=best, best_vs_bound=round(vs_bound[best], 3),
         min_flop_bound_ms=round(min(bounds), 2), plain_min_vs_bound=round(min(times["plain"]) / min(bounds), 3),
         best_min_vs_bound=round(min(min(t) for t in times.values()) / min(bounds), 3), rounds=repeats, device=dev)
    if pool > 0:
        refiner = refiners[best]
        gen = torch.Generator(device=device)
        with torch.no_grad():
            ms_pool = timed(lambda: refiner(x, m, pool=pool, generator=gen.manual_seed(0)), device, repeats)
        emit(bench="refiner_pool", model="cmgan", resolution=resolution, pool=pool, variant=best,
             ms=round(ms_pool, 2), speedup_vs_paper_2_7s=round(2700 / ms_pool, 2), device=dev)

    if not train_step:
        return
    g = instantiate(small.refiner).to(device)
    d = instantiate(small.discriminator).to(device)
    loss = RefinerLoss({"pixel": SpaceLoss(lpips_weight=0.0)}, l1=L1Loss(),
                       adversarial=NonSaturatingAdversarialLoss(input_noise_std=0.05))
    opt_g = torch.optim.Adam(g.parameters(), lr=5e-4, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(d.parameters(), lr=5e-4, betas=(0.0, 0.99))
    batch = {"x_gen": torch.rand(8, 3, 256, 256, device=device), "x_gt": torch.rand(8, 3, 256, 256, device=device),
             "mask": (torch.rand(8, 1, 256, 256, device=device) > 0.5).float()}

    def train_step():
        with autocast:
            x_pred = g(batch["x_gen"], batch["mask"])
            maps = loss.fit_maps(x_pred, batch, 0)
            d_loss, _ = loss.discriminator_loss(x_pred.detach(), batch, maps, {"pixel": d}, 0)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        d.requires_grad_(False)
        with autocast:
            g_loss, _ = loss.generator_loss(x_pred, batch, maps, {"pixel": d}, 0)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        d.requires_grad_(True)

    emit(bench="train_step", model="cmgan_small", resolution=256, batch=8, lpips=False,
         ms=round(timed(train_step, device, repeats), 2), device=device_name(device))


def _lpips_for_timing(device: torch.device):
    """Pretrained LPIPS when cached; otherwise the same network with a random trunk (same cost)."""
    import lpips

    from pixperfect.losses.perceptual import backbone_cache_path

    pretrained = backbone_cache_path("vgg")[0].is_file()
    model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=not pretrained, verbose=False)
    return model.to(device).eval().requires_grad_(False), pretrained


def bench_losses(device: torch.device, repeats: int, batch: int = 32, resolution: int = 512) -> None:
    """Tone-map fit + apply vs pixel-space L1 + LPIPS on the same batch (target: fit ≤ 10%)."""
    from pixperfect.losses.discriminative import DiscriminativeSpace

    g = torch.Generator(device=device).manual_seed(0)
    x_gt = torch.rand(batch, 3, resolution, resolution, device=device, generator=g)
    x_pred = (x_gt + 0.05 * torch.randn(x_gt.shape, device=device, generator=g)).clamp(0, 1)
    mask = torch.zeros(batch, 1, resolution, resolution, device=device)
    mask[..., resolution // 4: 3 * resolution // 4, resolution // 4: 3 * resolution // 4] = 1
    space = DiscriminativeSpace(degree=6)
    lp, pretrained = _lpips_for_timing(device)

    @torch.no_grad()
    def fit_apply():
        f = space.fit(x_pred, x_gt, mask, generator=g)
        f(x_pred), f(x_gt)

    @torch.no_grad()
    def pixel_terms():
        (x_pred - x_gt).abs().mean()
        lp(x_pred * 2 - 1, x_gt * 2 - 1).mean()

    t_fit = timed(fit_apply, device, repeats)
    t_pix = timed(pixel_terms, device, repeats)
    emit(bench="tone_map_fit_apply", batch=batch, resolution=resolution, degree=6, ms=round(t_fit, 2),
         device=device_name(device))
    emit(bench="pixel_l1_lpips", batch=batch, resolution=resolution, lpips_pretrained=pretrained,
         ms=round(t_pix, 2), device=device_name(device))
    emit(bench="fit_vs_pixel_terms", ratio=round(t_fit / t_pix, 4), target="<= 0.10", device=device_name(device))


def bench_tone_map_solve(device: torch.device, repeats: int, batch: int = 8, pixels: int = 8192) -> None:
    """The fit's least-squares solve as training runs it (``least_squares``: thin QR, then the
    pseudoinverse of the F×F factor) against the textbook ``pinv`` of the P×F feature matrix, at
    the Table-4 degrees, on the same features; with the largest difference of the coefficients."""
    from pixperfect.losses.tone_map import _features, least_squares, monomial_exponents

    g = torch.Generator(device=device).manual_seed(0)
    src = torch.rand(batch, pixels, 3, device=device, generator=g, dtype=torch.float64)
    tgt = src + 30 * 0.02 * torch.randn(src.shape, device=device, generator=g, dtype=torch.float64)
    for degree, cross in ((6, False), (6, True), (10, True)):
        a = _features(src, monomial_exponents(degree, cross), degree)
        t_pinv = timed(lambda: torch.linalg.pinv(a, rtol=1e-10) @ tgt, device, repeats)
        t_qr = timed(lambda: least_squares(a, tgt, 1e-10), device, repeats)
        diff = (least_squares(a, tgt, 1e-10) - torch.linalg.pinv(a, rtol=1e-10) @ tgt).abs().max()
        emit(bench="tone_map_solve", degree=degree, cross_channel=cross, features=a.shape[-1], batch=batch,
             pixels=pixels, pinv_ms=round(t_pinv, 2), qr_ms=round(t_qr, 2), speedup=round(t_pinv / t_qr, 3),
             max_coefficient_diff=float(diff), device=device_name(device))


def bench_pooling(device: torch.device, repeats: int, pool: int = 8, resolution: int = 256,
                  model: str = "cmgan_small") -> None:
    """Pooling with N variants in one batched forward vs N sequential N=1 forwards."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from pixperfect import Refiner

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}"]).model
    refiner = Refiner(instantiate(cfg.refiner).to(device))
    image = torch.rand(1, 3, resolution, resolution, device=device)
    mask = torch.zeros(1, 1, resolution, resolution, device=device)
    mask[..., resolution // 4: 3 * resolution // 4, resolution // 4: 3 * resolution // 4] = 1
    batched = timed(lambda: refiner(image, mask, pool=pool, generator=torch.Generator(device=device).manual_seed(0)),
                    device, repeats)
    sequential = timed(lambda: [refiner(image, mask) for _ in range(pool)], device, repeats)
    emit(bench="pooling", model=model, resolution=resolution, pool=pool, batched_ms=round(batched, 2),
         sequential_ms=round(sequential, 2), speedup=round(sequential / batched, 3), device=device_name(device))


def bench_seam_prior(device: torch.device, repeats: int, resolutions=(256, 512), model: str = "cmgan_small") -> None:
    """What the prior's CG fill (``seam_cg``) costs: the seam-prior refiner's forward with the push-pull
    fill alone and with the default CG budget, on a photo-like image with a cast."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from pixperfect.models.seam_offset import DEFAULT_CG, cg_iterations

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}", "model.refiner.seam_prior=true"]).model
    g = torch.Generator().manual_seed(0)
    for resolution in resolutions:
        image = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=resolution, mode="bicubic")
        image = (image + 0.02 * torch.randn(image.shape, generator=g)).clamp(0, 1).to(device)
        mask = torch.zeros(1, 1, resolution, resolution, device=device)
        mask[..., resolution // 4: 3 * resolution // 4, resolution // 5: 3 * resolution // 4] = 1
        image = (image + 0.05 * mask).clamp(0, 1)
        times = {}
        for cg in (0.0, DEFAULT_CG):
            refiner = instantiate(cfg.refiner, seam_cg=cg).to(device).eval()
            with torch.no_grad():
                times[cg] = timed(lambda: refiner(image, mask), device, repeats)
        emit(bench="seam_prior_fill", model=model, resolution=resolution, cg_iterations=cg_iterations(DEFAULT_CG, resolution, resolution),
             push_pull_ms=round(times[0.0], 2), cg_ms=round(times[DEFAULT_CG], 2),
             ratio=round(times[DEFAULT_CG] / times[0.0], 3), device=device_name(device))


def bench_simulation(device: torch.device, repeats: int, resolution: int = 512, n: int = 24) -> None:
    """CPU part: img/s on one core at 512², with a per-op breakdown; device part: ms/img of the VAE
    round trip (TAEF2 from paths.taef2_dir when present)."""
    import cv2
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from data.stream import SampleProcessor
    from pixperfect.utils import stable_seed
    from simulation.ops.texture import gaussian_blur, jpeg

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the CPU part runs one worker per core: measure one core
    cv2.setNumThreads(1)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["simulation=default"])
    pipe = instantiate(cfg.simulation)
    import io

    import numpy as np
    from PIL import Image

    photos = _bench_photos(cfg, resolution)
    raws = []
    for p in photos:
        buf = io.BytesIO()
        Image.fromarray((p.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(buf, format="JPEG", quality=95)
        raws.append({"__key__": f"k{len(raws)}", "jpg": buf.getvalue()})
    processor = SampleProcessor(resolution, pipe)

    # per-op breakdown, each op timed on its own inputs
    timings: dict[str, float] = {}

    def clock(name, fn):
        t0 = time.perf_counter()
        out = fn()
        timings[name] = timings.get(name, 0.0) + (time.perf_counter() - t0)
        return out

    for i in range(n):
        g = torch.Generator().manual_seed(i)
        raw = raws[i % len(raws)]
        _, image, _, _ = clock("decode+crop", lambda: processor.prepare(raw, stable_seed(i)))
        mask = clock("masks", lambda: pipe.masks(resolution, resolution, g))
        if pipe.color_shift is not None:
            clock("color_shift", lambda: pipe.color_shift(image, mask, g))
        clock("texture.smooth", lambda: gaussian_blur(image, 1.5))
        clock("texture.jpeg", lambda: jpeg(image, 60))
        clock("texture.noise", lambda: image + 0.02 * torch.randn(image.shape, generator=g))
        if pipe.content_band is not None:
            clock("content_band", lambda: pipe.content_band(image, mask, g))
        if pipe.boundary is not None:
            clock("boundary", lambda: pipe.boundary(mask, mask, g))
    for name, total in timings.items():
        emit(bench="simulation_op", op=name, ms_per_call=round(1000 * total / n, 2), resolution=resolution)

    t0 = time.perf_counter()
    for i in range(n):
        processor(raws[i % len(raws)], stable_seed("full", i))
    per_img = (time.perf_counter() - t0) / n
    emit(bench="simulation_cpu", resolution=resolution, img_per_s_per_core=round(1 / per_img, 2),
         ms_per_img=round(1000 * per_img, 2), target_img_per_s_per_core=16, device=device_name(torch.device("cpu")))

    taef2 = Path(str(cfg.paths.taef2_dir))
    if taef2.is_dir():
        from simulation import DeviceSimulation

        torch.set_num_threads(threads)
        sim = DeviceSimulation(autoencoder=str(taef2), dtype="bfloat16" if device.type == "cuda" else "float32")
        batch = {"x_gen": torch.rand(8, 3, resolution, resolution, device=device),
                 "mask": torch.ones(8, 1, resolution, resolution, device=device),
                 "vae": torch.ones(8, dtype=torch.bool, device=device)}
        batch["alpha"] = batch["mask"]
        ms = timed(lambda: sim(batch), device, max(1, repeats // 2))
        emit(bench="simulation_device", op="vae_roundtrip_taef2", batch=8, resolution=resolution,
             ms_per_img=round(ms / 8, 2), device=device_name(device))
    else:
        emit(bench="simulation_device", skipped=f"no TAEF2 weights at {taef2}")


def bench_data(batches: int = 20, experiment: str = "demo", overrides: list[str] | None = None) -> None:
    """An experiment's training batches (in the main process) with ``decode_cache`` 0 and as configured
    (16 where the experiment sets none): seconds per batch, their ratio, the share decoding takes
    without the cache, and whether the batches are the same (a non-zero exit if not)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import data.stream as stream

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", *(overrides or []),
                                                                  "data.num_workers=0"])
    cached = int(cfg.data.get("decode_cache", 0)) or 16
    decode_seconds = [0.0]
    real_decode = stream.decode_sample

    def timed_decode(raw):
        t0 = time.perf_counter()
        try:
            return real_decode(raw)
        finally:
            decode_seconds[0] += time.perf_counter() - t0

    runs = {}
    stream.decode_sample = timed_decode
    try:
        for n in (0, cached):
            dm = instantiate(cfg.data, simulation=instantiate(cfg.simulation), decode_cache=n)
            dm.setup("fit")
            it = iter(dm.train_dataloader())
            out = [next(it)]  # warm-up: the shuffle buffer fills
            decode_seconds[0] = 0.0
            t0 = time.perf_counter()
            out += [next(it) for _ in range(batches)]
            runs[n] = ((time.perf_counter() - t0) / batches, decode_seconds[0] / batches, out)
    finally:
        stream.decode_sample = real_decode
    (plain, plain_decode, a), (fast, _, b) = runs[0], runs[cached]
    same = all(torch.equal(x["x_gen"], y["x_gen"]) and torch.equal(x["x_gt"], y["x_gt"]) for x, y in zip(a, b))
    emit(bench="data", experiment=experiment, resolution=int(cfg.data.resolution), batch=int(cfg.data.batch_size),
         s_per_batch_uncached=round(plain, 4), s_per_batch_cached=round(fast, 4), decode_cache=cached,
         ratio=round(fast / plain, 3), decode_share_uncached=round(plain_decode / plain, 3), same_batches=same,
         device=device_name(torch.device("cpu")))
    if not same:
        raise RuntimeError("bench data: the cached batches differ from the uncached ones; the cache must only save work")


def _bench_photos(cfg, resolution: int) -> list[torch.Tensor]:
    """The demo photos, resized to cover ``resolution``."""
    import webdataset as wds

    from data.decode import decode_image
    from data.demo import write_demo_shards

    out = []
    for s in wds.WebDataset(list(write_demo_shards(cfg.paths.cache_dir)), shardshuffle=False):
        img = decode_image(s["png"])
        scale = resolution / min(img.shape[-2:])
        if scale > 1:
            img = torch.nn.functional.interpolate(img[None], scale_factor=scale, mode="bilinear")[0].clamp(0, 1)
        out.append(img)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["refiner", "losses", "simulation", "pilot", "prior", "data"], help="which benchmark")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="refiner: skip the torch.compile variants (minutes to compile on CPU)")
    parser.add_argument("--variants", default=None,
                        help="refiner: comma list of speed variants to time besides plain (default: all on CUDA, channels_last on CPU)")
    parser.add_argument("--no-train-step", action="store_true", help="refiner: skip the cmgan_small training step")
    parser.add_argument("--pool", type=int, default=None, help="refiner: pooling variants to time (default 8 on CUDA, 0 = skip on CPU)")
    parser.add_argument("--batch", type=int, default=None,
                        help="losses: batch size (default 32 on CUDA, 4 on CPU: LPIPS at 512² b32 takes minutes per call there)")
    parser.add_argument("--resolution", type=int, default=512, help="losses, refiner: image side")
    parser.add_argument("--pool-resolution", type=int, default=256, help="pooling: image side")
    parser.add_argument("--size", default=None, choices=["tiny", "small", "sd15"],
                        help="pilot: random-weight model size (default sd15 on CUDA, small on CPU)")
    parser.add_argument("--steps", type=int, default=20, help="pilot: num_inference_steps")
    parser.add_argument("--op-interval", type=int, default=5, help="pilot: τ")
    parser.add_argument("--gradient-steps", type=int, default=5, help="pilot: K")
    parser.add_argument("--gamma", type=float, default=1.0, help="pilot: γ")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="pilot")
    parser.add_argument("--experiment", default="demo", help="data: the experiment whose training batches to time")
    parser.add_argument("--override", action="append", default=[], help="data: a Hydra override (repeatable)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.what == "pilot":
        from evaluation.bench_pilot import bench_pilot

        size = args.size or ("sd15" if device.type == "cuda" else "small")
        bench_pilot(device, args.repeats, size, args.steps, args.op_interval, args.gradient_steps, args.gamma,
                    args.gradient_checkpointing)
    elif args.what == "refiner":
        bench_refiner(device, args.repeats, compile=not args.no_compile, resolution=args.resolution, pool=args.pool,
                      only=args.variants.split(",") if args.variants else None, train_step=not args.no_train_step)
    elif args.what == "simulation":
        bench_simulation(device, args.repeats, resolution=args.resolution)
    elif args.what == "prior":
        bench_seam_prior(device, args.repeats)
    elif args.what == "data":
        bench_data(experiment=args.experiment, overrides=args.override)
    else:
        batch = args.batch if args.batch is not None else (32 if device.type == "cuda" else 4)
        bench_losses(device, args.repeats, batch=batch, resolution=args.resolution)
        bench_tone_map_solve(device, args.repeats)
        bench_pooling(device, args.repeats, resolution=args.pool_resolution)
    return 0


if __name__ == "__main__":
    sys.exit(main())
