"""simulation.alone_p: single-family samples, as the benchmark makes them (a content band without a cast)."""

import pytest
import torch
from hydra.utils import instantiate

from simulation import MaskGenerator, SimulationPipeline

FAMILIES = ("color_shift", "texture", "content_band", "global_drift")


def family_of(label: str) -> str | None:
    name = label.split(".")[0]
    return name if name in FAMILIES else None  # boundary and clean are not artifact families here


def simulate(compose_cfg, alone_p: float, n: int, seed: int = 0) -> list[dict]:
    cfg = compose_cfg(["simulation=demo", f"simulation.alone_p={alone_p}", "simulation.clean_p=0"])
    pipeline = instantiate(cfg.simulation)
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(1))
    return [pipeline(image, g) for _ in range(n)]


def test_every_sample_carries_one_family_at_alone_p_1(compose_cfg):
    outs = simulate(compose_cfg, 1.0, 60)
    kinds = [{family_of(a) for a in o["applied"]} - {None} for o in outs]
    assert all(len(k) <= 1 for k in kinds), kinds  # never two (a texture draw may leave no sub-op)
    assert sum(len(k) == 1 for k in kinds) >= 50
    counts = {f: sum(f in k for k in kinds) for f in FAMILIES}
    # chosen in proportion to the families' p (demo: colour 0.8, texture 0.5, band 0.3, drift 0.05)
    assert counts["color_shift"] > counts["content_band"] > 0 and counts["content_band"] > counts["global_drift"]
    band_only = [o for o, k in zip(outs, kinds) if k == {"content_band"}]
    assert band_only and all((o["x_gen"] != o["x_gt"]).any() for o in band_only)


def test_independent_draws_at_alone_p_0_and_bad_values_are_refused(compose_cfg):
    mixed = sum(len({family_of(a) for a in o["applied"]} - {None}) > 1 for o in simulate(compose_cfg, 0.0, 40))
    assert mixed > 0  # drawn independently, some samples carry several families
    with pytest.raises(ValueError, match="alone_p must be in"):
        SimulationPipeline(MaskGenerator(), alone_p=1.5)
