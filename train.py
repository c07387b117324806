"""Train a PixPerfect refiner.

    python train.py experiment=pixperfect_flux data.train_shards='/data/train-{000000..000999}.tar'
    python train.py experiment=demo            # CPU, embedded data (what `make demo` runs)
    python train.py debug=fast                  # one batch through everything
    python train.py experiment=demo --cfg job   # print the composed config
"""

import os
from pathlib import Path

os.environ.setdefault("PIXPERFECT_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from pixperfect.training.run import train

    train(cfg)


if __name__ == "__main__":
    main()
