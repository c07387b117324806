"""Score a set of edits with every method, in the paper's format.

    python -m evaluation.evaluate set=SET 'refiners={demo: outputs/demo/refiner}' out_dir=OUT [pool=8]

Rows: the baselines (``input``, ``paste_back``, ``poisson``, ``reinhard``, ``histogram``; see
``evaluation/baselines.py``), each refiner (region ``edit``: the background outside the dilated mask
is kept; ``NAME@full`` with ``regions=[edit,full]``; ``NAME+original`` with ``original=true``: the
refiner also given the original image, as the baselines are) and, with ``pool=N``, ``NAME+poolN``.
Columns: FID, LPIPS, L1, PSNR on the whole image (Table 1 of the paper), then masked L1 / PSNR on the
dilated mask (the masked-L1 ratio to the input with its 95% paired bootstrap interval over the
samples, overall and per family: ``evaluation/intervals.py``; ``interval_by=photo`` resamples whole
photos), CIEDE2000 in the mask, the boundary
seam error, background MSE, KID, CLIP-T (sets with prompts, when a CLIP model is configured) and
seconds per image. Metrics whose weights are not
cached are ``null`` with the reason under the table. Writes ``results.json``, ``results.md``,
``results.csv`` and ``contact_sheet.png`` to ``out_dir``; bad inputs are one line and exit 2.
``output_bits=8`` scores every row as the 8-bit file a user would save (outputs rounded to 1/255,
as restoration benchmarks do); the default scores the float outputs.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch

import pixperfect.metrics as M
from evaluation.baselines import BASELINES
from evaluation.intervals import ratio_interval
from evaluation.report import contact_sheet, flat_row, markdown, write_results
from evaluation.sets import EvalInputError, Record, families_of, load_set
from pixperfect.utils import stable_seed

log = logging.getLogger(__name__)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PER_SAMPLE = ("l1", "psnr", "masked_l1", "masked_psnr", "delta_e", "seam", "bg_mse")
Method = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


def sample_metrics(out: torch.Tensor, x_gt: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every per-sample metric of a batch of outputs against the ground truth."""
    return {"l1": M.l1(out, x_gt), "psnr": M.psnr(out, x_gt), "masked_l1": M.masked_l1(out, x_gt, mask),
            "masked_psnr": M.masked_psnr(out, x_gt, mask), "delta_e": M.delta_e(out, x_gt, mask),
            "seam": M.seam(out, x_gt, mask), "bg_mse": M.bg_mse(out, x_gt, mask)}


def load_lpips(net: str | None, device: str):
    """(model or None, reason or None) — no download, no crash when the backbone is not cached."""
    if not net:
        return None, "LPIPS off (metrics.lpips_net=null)"
    from pixperfect.losses.perceptual import backbone_cache_path

    path, url = backbone_cache_path(net)
    if not path.is_file():
        return None, f"LPIPS ({net}) needs {path.name} in {path.parent} (from {url}); not cached here"
    import lpips

    return lpips.LPIPS(net=net, pretrained=True, verbose=False).eval().requires_grad_(False).to(device), None


def refiner_method(refiner, pool: int, region: str, seed: int, original: bool = False) -> Method:
    """A refiner row: batched forward (with pooling when pool > 1), seeded per batch; with
    ``original`` the refiner is also given the original image, as the baselines are."""
    def run(x_gen, mask, x_orig, batch_index):
        kwargs = {"region": region}
        if original:
            kwargs["original"] = x_orig
        if pool > 1:
            kwargs["pool"] = pool
            kwargs["generator"] = torch.Generator(device=refiner.device).manual_seed(stable_seed(seed, batch_index))
        return refiner(x_gen, mask, **kwargs).float().cpu()

    return run


def quantized(method: Method, bits: int) -> Method:
    """``method`` with its output rounded to ``bits`` per channel: what writing it to a ``bits``-bit
    file keeps. A correction under half a step is gone from the file, so it is gone from the score.
    Every row is rounded, ``input`` included: on a set stored at that depth ``input`` is unchanged;
    on a deeper one (16-bit PNGs scored at 8) the ratios are then between 8-bit files."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise EvalInputError(f"output_bits must be a whole number of bits in 1..16 (8: an 8-bit image) or null; got {bits!r}")
    levels = float(2 ** int(bits) - 1)

    def run(x_gen, mask, x_orig, batch_index):
        out = method(x_gen, mask, x_orig, batch_index)
        return (out.clamp(0.0, 1.0) * levels).round() / levels

    return run


def build_methods(cfg) -> OrderedDict[str, Method]:
    methods: OrderedDict[str, Method] = OrderedDict()
    for name in cfg.baselines:
        if name not in BASELINES:
            raise EvalInputError(f"unknown baseline {name!r}; expected some of {', '.join(BASELINES)}")
        fn = BASELINES[name]
        methods[name] = lambda g, m, o, i, fn=fn: fn(g, m, o)
    from pixperfect.inference import Refiner

    regions = list(cfg.regions)
    bad = set(regions) - {"edit", "full"}
    if bad:
        raise EvalInputError(f"regions must be a subset of [edit, full]; got {regions}")
    if cfg.get("original") and "edit" not in regions:
        raise EvalInputError(f"original=true keeps the original outside the mask, so it needs edit in regions; got {regions}")
    pool = int(cfg.pool or 1)
    if pool < 1:
        raise EvalInputError(f"pool must be >= 1; got {pool}")
    for name, folder in (cfg.refiners or {}).items():
        if not Path(str(folder)).is_dir():
            raise EvalInputError(f"refiner {name!r}: {folder} is not a folder (expected an exported refiner: "
                                 "config.json + model.safetensors)")
        try:
            refiner = Refiner.from_pretrained(str(folder), device=cfg.device)
        except Exception as exc:  # noqa: BLE001 — any load failure is one line for the user
            raise EvalInputError(f"refiner {name!r}: cannot load {folder}: {str(exc).splitlines()[0]}") from None
        rows = [(name if region == "edit" else f"{name}@full", region, False) for region in regions]
        if cfg.get("original"):
            rows.append((f"{name}+original", "edit", True))
        for row, region, original in rows:
            methods[row] = refiner_method(refiner, 1, region, cfg.seed, original)
            if pool > 1:
                methods[f"{row}+pool{pool}"] = refiner_method(refiner, pool, region, cfg.seed, original)
    bits = cfg.get("output_bits")
    if bits is not None:
        methods = OrderedDict((name, quantized(fn, bits)) for name, fn in methods.items())
    return methods


def batches(records: list[Record], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of same-size samples (in set order within a size)."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, rec in enumerate(records):
        by_size.setdefault(rec.size, []).append(i)
    return [idx[k:k + batch_size] for idx in by_size.values() for k in range(0, len(idx), batch_size)]


def stack_records(records: list[Record], idx: list[int]) -> dict[str, torch.Tensor]:
    """The samples ``idx`` decoded and stacked into N×C×H×W tensors (one size: see ``batches``)."""
    decoded = [records[i].decode() for i in idx]
    return {k: torch.stack([d[k] for d in decoded]) for k in decoded[0]}


INTERVAL_UNITS = ("edit", "photo")


def check_interval_by(interval_by) -> str:
    if interval_by not in INTERVAL_UNITS:
        raise EvalInputError(f"interval_by must be one of {', '.join(INTERVAL_UNITS)}; got {interval_by!r}")
    return interval_by


def interval_groups(records: list[Record], interval_by: str) -> list[str] | None:
    """What an interval resamples: single edits (None) or whole photos, each edit labelled with the
    photo ``make_set`` made it from (``source`` in its json; its key where a set has none)."""
    return None if check_interval_by(interval_by) == "edit" else [str(r.meta.get("source", r.key)) for r in records]


def evaluate(records: list[Record], methods: OrderedDict[str, Method], batch_size: int = 8,
             lpips_model=None, distances: M.FeatureDistance | None = None, clip_t=None,
             progress: bool = True, interval_by: str = "edit") -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """Run every method on every sample. Returns (aggregated results, per-sample values per method).
    ``interval_by``: what the ratios' bootstrap intervals resample, ``edit`` or ``photo``."""
    from tqdm.auto import tqdm

    groups = interval_groups(records, interval_by)

    n = len(records)
    per: dict[str, dict[str, torch.Tensor]] = {m: {k: torch.zeros(n, dtype=torch.float64) for k in PER_SAMPLE}
                                               for m in methods}
    if lpips_model is not None:
        for m in methods:
            per[m]["lpips"] = torch.zeros(n, dtype=torch.float64)
    seconds = dict.fromkeys(methods, 0.0)
    fake_features: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
    prompts = [r.prompt for r in records]
    has_prompts = clip_t is not None and getattr(clip_t, "available", False) and all(prompts)
    if has_prompts:
        for m in methods:
            per[m]["clip_t"] = torch.zeros(n, dtype=torch.float64)
    bar = tqdm(total=n, desc="evaluate", unit="img", disable=not progress, dynamic_ncols=True)
    for b, idx in enumerate(batches(records, batch_size)):
        batch = stack_records(records, idx)
        x_gen, mask, x_gt = batch["x_gen"], batch["mask"], batch["x_gt"]
        if distances is not None:
            distances.update(x_gt, real=True)
        t_idx = torch.tensor(idx)
        for name, method in methods.items():
            t0 = time.perf_counter()
            out = method(x_gen, mask, x_gt, b).float().cpu()
            seconds[name] += time.perf_counter() - t0
            if out.shape != x_gen.shape:
                raise RuntimeError(f"method {name} returned {tuple(out.shape)} for input {tuple(x_gen.shape)}")
            for k, v in sample_metrics(out, x_gt, mask).items():
                per[name][k][t_idx] = v.double()
            if lpips_model is not None:
                with torch.no_grad():
                    dev = next(lpips_model.parameters()).device
                    d = lpips_model(out.to(dev) * 2 - 1, x_gt.to(dev) * 2 - 1).reshape(-1)
                per[name]["lpips"][t_idx] = d.double().cpu()
            if has_prompts:
                per[name]["clip_t"][t_idx] = clip_t(out, [prompts[i] for i in idx]).double().cpu()
            if distances is not None and distances.available:
                fake_features[name].append(distances.features(out))
        bar.update(len(idx))
    bar.close()

    methods_out: dict[str, dict] = {}
    base = per[next(iter(methods))]["masked_l1"] if "input" not in per else per["input"]["masked_l1"]
    for name in methods:
        row = {k: float(v.mean()) for k, v in per[name].items()}
        row["masked_l1_ratio"] = _ratio(per[name]["masked_l1"].mean(), base.mean())
        row["masked_l1_ratio_ci"] = ratio_interval(per[name]["masked_l1"], base, groups=groups)
        row["sec_per_image"] = seconds[name] / n
        if distances is not None and distances.available:
            distances.fake = fake_features[name]
            row.update(distances.compute())
        else:
            row.update({"fid": None, "kid": None})
        row.setdefault("lpips", None)
        row.setdefault("clip_t", None)
        methods_out[name] = row
    families: dict[str, dict] = {}
    labels: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        for fam in families_of(rec):
            labels.setdefault(fam, []).append(i)
    if len(labels) > 1 or "unlabelled" not in labels:
        for fam in sorted(labels):
            ix = torch.tensor(labels[fam])
            fam_groups = None if groups is None else [groups[i] for i in labels[fam]]
            units = len(ix) if fam_groups is None else len(set(fam_groups))
            families[fam] = {
                name: {"n": len(ix), "units": units, "masked_l1": float(per[name]["masked_l1"][ix].mean()),
                       "masked_l1_ratio": _ratio(per[name]["masked_l1"][ix].mean(), base[ix].mean()),
                       "masked_l1_ratio_ci": ratio_interval(per[name]["masked_l1"][ix], base[ix], groups=fam_groups),
                       "masked_psnr": float(per[name]["masked_psnr"][ix].mean()),
                       "delta_e": float(per[name]["delta_e"][ix].mean()),
                       "seam": float(per[name]["seam"][ix].mean()),
                       "bg_mse": float(per[name]["bg_mse"][ix].mean())}
                for name in methods}
    return {"methods": methods_out, "families": families, "interval_by": interval_by}, per


def _ratio(num: torch.Tensor, den: torch.Tensor) -> float | None:
    return float(num / den) if float(den) > 1e-8 else None


def worst_cases(per: dict[str, dict[str, torch.Tensor]], methods: list[str], k: int) -> list[int]:
    """Indices of the samples where the first refiner row does worst against the input (masked L1
    difference), or the largest input error when there is no refiner row."""
    rows = [m for m in methods if m not in BASELINES]
    ref = per["input"]["masked_l1"] if "input" in per else per[methods[0]]["masked_l1"]
    score = per[rows[0]]["masked_l1"] - ref if rows else ref
    return torch.argsort(score, descending=True)[:k].tolist()


def run(cfg) -> dict:
    """The whole command: load, score, write; returns the results dict."""
    from pixperfect.metrics.distribution import FeatureDistance

    interval_by = check_interval_by(cfg.get("interval_by", "edit"))  # before any loading: a typo costs nothing
    records = load_set(str(cfg.set), cfg.get("limit"))
    methods = build_methods(cfg)
    lpips_model, lpips_reason = load_lpips(cfg.metrics.get("lpips_net"), cfg.device)
    distances = FeatureDistance(kid_subset_size=cfg.metrics.kid_subset_size, device=cfg.device) \
        if cfg.metrics.get("fid", True) else None
    clip_t, clip_reason = None, None
    if any(r.prompt for r in records):
        clip_t, clip_reason = _clip_scorer(cfg.metrics.get("clip_model"))
    t0 = time.perf_counter()
    results, per = evaluate(records, methods, cfg.batch_size, lpips_model, distances, clip_t,
                            interval_by=interval_by)
    recipe = records[0].meta.get("recipe")
    results["set"] = {"spec": str(cfg.set), "samples": len(records), "recipe": recipe,
                      "sizes": sorted({f"{w}x{h}" for h, w in (r.size for r in records)}),
                      "seconds_total": time.perf_counter() - t0}
    notes = []
    if lpips_reason:
        notes.append(f"LPIPS is null: {lpips_reason}")
    if distances is None:
        notes.append("FID/KID are null: metrics.fid=false")
    elif not distances.available:
        notes.append(f"FID/KID are null: {distances.reason}")
    if clip_reason:
        notes.append(f"CLIP-T is null: {clip_reason}")
    if cfg.get("output_bits") is not None:
        notes.append(f"every row scored as an image of {cfg.output_bits} bits per channel (output_bits={cfg.output_bits}: outputs rounded "
                     f"to 1/{2 ** int(cfg.output_bits) - 1}); output_bits=null scores the float outputs")
    results["output_bits"] = cfg.get("output_bits")
    results["notes"] = notes

    out_dir = Path(str(cfg.out_dir))
    paths = write_results(results, out_dir)
    names = list(methods)
    worst = worst_cases(per, names, int(cfg.contact_sheet_rows))
    rows, titles = [], []
    for i in worst:
        sample = records[i].decode()
        g, m, o = (sample[k][None] for k in ("x_gen", "mask", "x_gt"))
        outs = [methods[name](g, m, o, 10_000 + i).float().cpu()[0] for name in names]
        lead = [] if "input" in names else [g[0]]  # the input column is x_gen itself
        rows.append([*lead, *outs, o[0]])
        titles.append(f"{records[i].key} [{', '.join(families_of(records[i]))}]")
    if rows:
        labels = ([] if "input" in names else ["x_gen"]) + [*names, "x_gt"]
        contact_sheet(rows, labels, titles).save(out_dir / "contact_sheet.png")
    if cfg.get("logger") == "wandb":
        _log_wandb(cfg, results, out_dir)
    print(markdown(results))
    print(f"wrote {paths['md']}, {paths['json']}, {paths['csv']} and {out_dir / 'contact_sheet.png'}")
    return results


def _clip_scorer(model):
    if not model:
        return None, "no CLIP model configured (metrics.clip_model=PATH_OR_ID of a cached CLIP)"
    try:
        from evaluation.clip_t import ClipT
    except ImportError as exc:
        return None, f"CLIP-T unavailable: {exc}"
    scorer = ClipT(model)
    return (scorer, None) if scorer.available else (None, scorer.reason)


def _log_wandb(cfg, results: dict, out_dir: Path) -> None:
    import wandb

    run = wandb.init(project=cfg.wandb.project, group=cfg.wandb.get("group"), name=cfg.wandb.get("name"),
                     job_type="evaluate", dir=str(out_dir), config={"set": str(cfg.set), "refiners": dict(cfg.refiners or {}),
                                                  "pool": cfg.pool}, reinit="finish_previous")
    rows = {name: flat_row(row) for name, row in results["methods"].items()}  # an interval: two columns
    keys = sorted({k for row in rows.values() for k in row})
    table = wandb.Table(columns=["method", *keys])
    for name, row in rows.items():
        table.add_data(name, *(row.get(k) for k in keys))
    log = {"evaluate/results": table}
    sheet = out_dir / "contact_sheet.png"
    if sheet.is_file():
        log["evaluate/contact_sheet"] = wandb.Image(str(sheet))
    run.log(log)
    run.finish()


def main() -> int:
    import hydra

    @hydra.main(config_path=str(CONFIGS), config_name="evaluate", version_base="1.3")
    def _main(cfg) -> None:
        try:
            run(cfg)
        except EvalInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    _main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
