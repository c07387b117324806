"""Is the simulation's artifact strength that of real autoencoder round trips?

    python -m evaluation.calibrate PHOTOS --size 128 --n 24 --autoencoder ../shared/weights/taef2 --png docs/calibration.png

On centre crops of ``PHOTOS`` with the simulation's own masks, compares each simulated family
(``configs/simulation/default.yaml``, one family at a time, boundary op off) with a real round trip
through ``--autoencoder`` pasted into the same mask: masked PSNR, ΔE00 in the mask, and the ratio
of high-frequency energy (mean |Laplacian|) in the mask, edit over original — 1 means the texture
keeps its energy, < 1 means it was smoothed away. Prints medians and quartiles and plots the histograms.

``--irreducible`` instead measures how much of the input's masked L1 on the full simulation is
the *scene's* JPEG and noise under the mask — texture in the target that no refiner can know.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]


def hf_ratio(x_gen: torch.Tensor, x_gt: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean |Laplacian| of the grey image in the mask, edit over original."""
    def energy(x):
        lap = F.conv2d(x.mean(0, keepdim=True)[None], LAPLACE, padding=1)[0].abs()
        return float((lap * mask).sum() / mask.sum().clamp_min(1))
    return energy(x_gen) / max(energy(x_gt), 1e-8)


def stats(x_gen: torch.Tensor, x_gt: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    from pixperfect.metrics import delta_e, masked_psnr

    m = (mask > 0.5).float()
    return {"masked_psnr": float(masked_psnr(x_gen[None], x_gt[None], m[None], band=0)),
            "delta_e": float(delta_e(x_gen[None], x_gt[None], m[None])), "hf_ratio": hf_ratio(x_gen, x_gt, m)}


def family_pipelines():
    """One SimulationPipeline per family of configs/simulation/default.yaml, boundary op off, p = 1."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs" / "simulation"), version_base="1.3"):
        cfg = compose(config_name="default")
    out = {}
    for fam, sub in (("color_shift", None), ("texture.smooth", "smooth"), ("texture.noise", "noise"),
                     ("texture.jpeg", "jpeg"), ("texture.resynth", "resynth"), ("content_band", None)):
        c = cfg.copy()
        c.clean_p = 0.0
        for other in ("color_shift", "texture", "content_band", "boundary", "global_drift"):
            if other != fam.split(".")[0]:
                c[other] = None
        c[fam.split(".")[0]].p = 1.0
        if sub is not None:
            for s in ("smooth", "jpeg", "noise", "vae", "resynth"):
                c.texture[f"{s}_p"] = 1.0 if s == sub else 0.0
        out[fam] = instantiate(c)
    return out


def irreducible_share(photos: list[Path], size: int, per_photo: int = 4) -> dict[str, float]:
    """Share of the input's masked L1 that is |target − clean photo| under the mask (the scene's own
    JPEG/noise), over the default simulation without clean samples or global drift."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from evaluation.make_set import square
    from pixperfect.metrics import masked_l1

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs" / "simulation"), version_base="1.3"):
        cfg = compose(config_name="default")
    cfg.clean_p, cfg.global_drift = 0.0, None
    sim = instantiate(cfg)
    totals: dict[str, list[float]] = {"all": [0.0, 0.0], "with texture": [0.0, 0.0], "without texture": [0.0, 0.0]}
    for i, path in enumerate(photos):
        clean = torch.from_numpy(square(path, size)).permute(2, 0, 1).float()
        for j in range(per_photo):
            s = sim(clean, torch.Generator().manual_seed(i * 10 + j))
            m = s["mask"][None]
            e_in = float(masked_l1(s["x_gen"][None], s["x_gt"][None], m))
            e_irr = float(masked_l1(clean[None], s["x_gt"][None], m))
            kind = "with texture" if any(a.startswith("texture") for a in s["applied"]) else "without texture"
            for k in ("all", kind):
                totals[k][0] += e_irr
                totals[k][1] += e_in
    return {k: irr / max(inp, 1e-12) for k, (irr, inp) in totals.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("photos")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n", type=int, default=24, help="photos (the last N of the sorted folder)")
    parser.add_argument("--autoencoder", default=None, help="TAESD-format folder or diffusers AutoencoderKL")
    parser.add_argument("--irreducible", action="store_true",
                        help="print the share of the simulation's masked L1 that no refiner can remove, and stop")
    parser.add_argument("--png", default=None, help="write histograms here")
    args = parser.parse_args(argv)
    from evaluation.degradations import AutoencoderRoundTrip
    from evaluation.make_set import list_photos, square

    photos = list_photos(Path(args.photos))[-args.n:]
    if args.irreducible:
        shares = irreducible_share(photos, args.size)
        print("| samples | share of the input's masked L1 that is scene texture under the mask |\n|---|---:|")
        for k, v in shares.items():
            print(f"| {k} | {v:.3f} |")
        return 0
    if args.autoencoder is None:
        print("error: --autoencoder is required (e.g. ../shared/weights/taef2)", file=sys.stderr)
        return 2
    ae = AutoencoderRoundTrip(args.autoencoder)
    pipes = family_pipelines()
    rows: dict[str, list[dict]] = {"vae (real)": [], **{f: [] for f in pipes}}
    for i, path in enumerate(photos):
        clean = torch.from_numpy(square(path, args.size)).permute(2, 0, 1).float()
        for fam, pipe in pipes.items():
            s = pipe(clean, torch.Generator().manual_seed(i))
            rows[fam].append(stats(s["x_gen"], s["x_gt"], s["mask"]))
            if fam == "color_shift":  # the same mask for the real round trip
                mask = s["mask"]
                real = torch.from_numpy(ae(clean.permute(1, 2, 0).double().numpy())).permute(2, 0, 1).float()
                rows["vae (real)"].append(stats(mask * real + (1 - mask) * clean, clean, mask))
    keys = ("masked_psnr", "delta_e", "hf_ratio")
    print(f"{len(photos)} photos at {args.size}²; median [quartiles]\n")
    print("| family | masked PSNR (dB) | ΔE00 | HF energy ratio |\n|---|---:|---:|---:|")
    for fam, rs in rows.items():
        cells = []
        for k in keys:
            v = np.array([r[k] for r in rs])
            q1, q2, q3 = np.percentile(v, [25, 50, 75])
            cells.append(f"{q2:.2f} [{q1:.2f}, {q3:.2f}]")
        print(f"| {fam} | " + " | ".join(cells) + " |")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
        for ax, k in zip(axes, keys):
            for fam, rs in rows.items():
                v = np.array([r[k] for r in rs])
                v = v[np.isfinite(v)]
                ax.hist(np.clip(v, *np.percentile(v, [1, 99])) if len(v) else v, bins=20, histtype="step",
                        lw=2.5 if "real" in fam else 1.2, label=fam)
            ax.set_title(k)
        axes[-1].legend(fontsize=7)
        fig.suptitle(f"simulated families vs a real autoencoder round trip ({Path(args.autoencoder).name}), {args.size}² crops")
        fig.tight_layout()
        fig.savefig(args.png, dpi=100)
        print(f"\nwrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
