"""Shared fixtures. Tests run offline: no hub look-ups, W&B offline, tiny models, small images."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CBSD68 = ROOT.parent / "shared" / "data" / "cbsd68"
os.environ.setdefault("PIXPERFECT_ROOT", str(ROOT))

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def cbsd68() -> Path:
    if not CBSD68.is_dir() or not any(CBSD68.glob("*.png")):
        pytest.skip(f"CBSD68 photos not found at {CBSD68} (the shared test data folder)")
    return CBSD68


@pytest.fixture(scope="session")
def cbsd68_photos(cbsd68) -> list[Path]:
    return sorted(cbsd68.glob("*.png"))


def load_photo(path: Path, size: int | None = None) -> torch.Tensor:
    """3×H×W float in [0, 1]; optionally a centre square crop resized to ``size``."""
    im = Image.open(path).convert("RGB")
    if size is not None:
        s = min(im.size)
        left, top = (im.width - s) // 2, (im.height - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


@pytest.fixture(scope="session")
def photo(cbsd68_photos) -> torch.Tensor:
    return load_photo(cbsd68_photos[0], 96)


def compose(overrides: list[str], output_dir: Path, config_name: str = "train"):
    """Compose configs/CONFIG_NAME.yaml like `python train.py OVERRIDES` (no run dir is created)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose(
            config_name=config_name,
            overrides=[*overrides, f"paths.output_dir={output_dir}", f"paths.log_dir={output_dir}/logs",
                       f"paths.cache_dir={output_dir.parent / 'cache'}"],
        )


@pytest.fixture
def compose_cfg(tmp_path):
    return lambda overrides=(): compose(list(overrides), tmp_path / "run")


def split_shards(root: Path, splits: dict[str, list[Path]], maxcount: int) -> None:
    """``root/<split>/shard-*.tar`` for each split's photos (linked into ``root/<split>_src`` first)."""
    from data.make_shards import make_shards

    for split, photos in splits.items():
        (root / f"{split}_src").mkdir()
        for p in photos:
            (root / f"{split}_src" / p.name).symlink_to(p)
        make_shards(root / f"{split}_src", root / split, maxcount=maxcount, quiet=True)
