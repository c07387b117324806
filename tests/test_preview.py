import numpy as np
from PIL import Image

from simulation.preview import main as preview_main


def test_preview_writes_a_labelled_grid(tmp_path, cbsd68):
    src = tmp_path / "photos"
    src.mkdir()
    for p in sorted(cbsd68.glob("*.png"))[:3]:
        (src / p.name).symlink_to(p)
    out = tmp_path / "grid.png"
    assert preview_main(["--n", "4", "--resolution", "64", "--images", str(src), "--out", str(out),
                         "simulation.color_shift.p=1.0", f"paths.cache_dir={tmp_path / 'cache'}"]) == 0
    grid = np.asarray(Image.open(out))
    # header + 4 × (caption strip + image row); 4 columns of 64 px + borders
    assert grid.shape[1] == 4 * 66 and grid.shape[0] == 18 + 4 * (16 + 66)
    diff_column = grid[18 + 16:, 3 * 66:4 * 66]
    assert diff_column.max() > 0  # colour shift always on: some difference is visible


def test_preview_rejects_an_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert preview_main(["--images", str(tmp_path / "empty"), "--out", str(tmp_path / "g.png")]) == 2
    assert "no images" in capsys.readouterr().err
