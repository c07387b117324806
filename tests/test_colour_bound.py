"""``python -m evaluation.colour_bound``: the best offset / affine colour correction, fitted with the target."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation.colour_bound import main, oracle_correction
from pixperfect.metrics.image import masked_l1


def _image(seed: int = 0, size: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([0.2 + 0.5 * xx, 0.3 + 0.4 * yy, 0.6 - 0.3 * xx * yy])
    return (base + 0.05 * torch.rand(3, size, size, generator=g))[None].clamp(0, 1)


def _mask(size: int = 48) -> torch.Tensor:
    m = torch.zeros(1, 1, size, size)
    m[..., 12:36, 10:40] = 1.0
    return m


def test_an_affine_cast_is_undone_exactly_and_the_background_is_kept():
    gt, m = _image(), _mask()
    gain, bias = torch.tensor([0.9, 1.1, 0.95]).view(1, 3, 1, 1), torch.tensor([0.05, -0.04, 0.02]).view(1, 3, 1, 1)
    gen = torch.where(m > 0.5, gt * gain + bias, gt)
    for kind, window in (("affine", None), ("affine", 8)):  # one fit, then windows of radius 48/8 = 6 px
        out = oracle_correction(kind, window)(gen, m, gt, 0)
        assert torch.allclose(out, gt, atol=5e-4), (kind, window)  # eps = 1e-6 on the variance: within 2e-4
        assert torch.equal(out[m.expand_as(out) < 0.5], gen[m.expand_as(gen) < 0.5])
    # an offset cannot undo a gain: it is left with the gain's content-dependent part
    offset = oracle_correction("offset")(gen, m, gt, 0)
    assert 0.01 < float(masked_l1(offset, gt, m) / masked_l1(gen, gt, m)) < 0.9


def test_the_offset_is_the_mean_error_over_the_mask_computed_directly():
    gt, m = _image(1), _mask()
    noise = 0.02 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(3))
    gen = (gt + m * (torch.tensor([0.06, 0.0, -0.05]).view(1, 3, 1, 1) + noise)).clamp(0, 1)
    inside = m[0, 0] > 0.5
    d = torch.stack([(gt[0, c] - gen[0, c])[inside].mean() for c in range(3)]).view(1, 3, 1, 1)
    reference = torch.where(m > 0.5, gen + d, gen).clamp(0, 1)
    out = oracle_correction("offset")(gen, m, gt, 0)
    assert torch.allclose(out, reference, atol=1e-6)
    # windows of radius side/1 cover the whole image from every pixel: the same single offset
    assert torch.allclose(oracle_correction("offset", 1)(gen, m, gt, 0), reference, atol=1e-5)


def test_an_image_the_fit_would_make_worse_is_left_alone():
    gt, m = _image(2), _mask()
    # sparse large errors: the L2 fit moves every pixel to halve a few, which costs masked L1
    gen = gt.clone()
    gen[..., 20, 20:24] = 1.0
    out = oracle_correction("offset")(gen, m, gt, 0)
    fitted = torch.where(m > 0.5, gen + ((gt - gen) * m).sum((2, 3), keepdim=True) / m.sum(), gen).clamp(0, 1)
    assert masked_l1(fitted, gt, m) > masked_l1(gen, gt, m)   # the fit alone would harm this image
    assert torch.equal(out, gen)                                # so the bound returns the input


def test_each_image_of_a_batch_is_fitted_and_left_alone_on_its_own():
    gt = torch.cat([_image(6), _image(7)])
    m = _mask().expand(2, -1, -1, -1).clone()
    cast = (gt[:1] + m[:1] * torch.tensor([0.05, -0.03, 0.04]).view(1, 3, 1, 1)).clamp(0, 1)
    spikes = gt[1:].clone()
    spikes[..., 20, 20:24] = 1.0                       # the fit would harm this one (see above)
    gen = torch.cat([cast, spikes])
    out = oracle_correction("offset")(gen, m, gt, 0)
    alone = [oracle_correction("offset")(gen[i:i + 1], m[i:i + 1], gt[i:i + 1], 0) for i in range(2)]
    assert torch.equal(out, torch.cat(alone))          # the batch changes nothing
    assert torch.equal(out[1], gen[1])                 # the harmed image is returned as it was
    assert masked_l1(out[:1], gt[:1], m[:1]) < 0.05 * masked_l1(gen[:1], gt[:1], m[:1])  # the cast one is fixed


def test_bad_kind_or_window_is_refused():
    with pytest.raises(ValueError, match="kind"):
        oracle_correction("gain")
    for window in (0, 2.5, True):
        with pytest.raises(ValueError, match="window"):
            oracle_correction("affine", window)


def _write(folder, name, gen, mask, gt, families):
    to8 = lambda t: Image.fromarray((t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))  # noqa: E731
    to8(gen).save(folder / f"{name}.gen.png")
    to8(gt).save(folder / f"{name}.gt.png")
    Image.fromarray((mask[0, 0].numpy() * 255).astype(np.uint8)).save(folder / f"{name}.mask.png")
    (folder / f"{name}.json").write_text(json.dumps({"families": families}))


def test_cli_prints_every_bound_row_per_family_and_refuses_bad_windows(tmp_path, capsys):
    gt, m = _image(4), _mask()
    _write(tmp_path, "cast", (gt + m * 0.08).clamp(0, 1), m, gt, ["color_uniform", "boundary.hard"])
    blur = torch.nn.functional.avg_pool2d(gt, 5, stride=1, padding=2, count_include_pad=False)
    _write(tmp_path, "blur", torch.where(m > 0.5, blur, gt), m, gt, ["texture_blur", "boundary.hard"])
    assert main(["--set", str(tmp_path), "--windows", "4"]) == 0
    out = capsys.readouterr().out
    assert "share of the input's masked L1 per family:" in out and "color_uniform" in out.splitlines()[-1]
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ") and "variant" not in line}
    assert list(rows) == ["offset, one per image", "offset, windows of radius side/4",
                          "affine, one per image", "affine, windows of radius side/4"]
    header = [c.strip() for c in out.splitlines()[1].split("|")[1:-1]]
    cast_col = header.index("color_uniform")
    for line in rows.values():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert float(cells[cast_col]) < 0.05        # a uniform cast: every colour fit removes it
        # blur is not colour: no colour fit removes much of it (and none makes it worse)
        assert 0.7 < float(cells[header.index("texture_blur")]) <= 1.0
    assert main(["--set", str(tmp_path), "--windows", "4", "--split-boundary"]) == 0  # the same rows, by seam
    split = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in split[1].split("|")[1:-1]]
    assert "color_uniform" not in header and "texture_blur·hard" in header
    for line in (line for line in split if line.startswith("| ") and "variant" not in line):
        assert float([c.strip() for c in line.split("|")[1:-1]][header.index("color_uniform·hard")]) < 0.05
    assert main(["--set", str(tmp_path), "--windows", "0"]) == 2
    assert "--windows" in capsys.readouterr().err
    assert main(["--set", str(tmp_path), "--output-bits", "0"]) == 2
    assert "output_bits must be a whole number of bits in 1..16" in capsys.readouterr().err
    assert main(["--set", str(tmp_path / "missing")]) == 2 and "does not exist" in capsys.readouterr().err


def test_input_error_shares_equal_a_direct_count(tmp_path):
    from evaluation.colour_bound import input_error_shares
    from evaluation.prior_sweep import scored
    from evaluation.sets import families_of, load_set

    gt, m = _image(5), _mask()
    _write(tmp_path, "a", (gt + m * 0.08).clamp(0, 1), m, gt, ["color_uniform", "boundary.hard"])
    _write(tmp_path, "b", (gt + m * 0.02).clamp(0, 1), m, gt, ["texture_noise", "boundary.hard"])
    _write(tmp_path, "c", (gt + m * 0.03).clamp(0, 1), m, gt, ["texture_noise", "boundary.feathered"])
    _write(tmp_path, "d", gt, m, gt, ["clean"])
    records = load_set(str(tmp_path))
    _, results = scored(records, {})
    shares = input_error_shares(results, len(records))
    # the reference: each record's input error, summed per label, over the total
    errors = [float(masked_l1(*(r.decode()[k][None] for k in ("x_gen", "x_gt", "mask")))) for r in records]
    for label in {f for r in records for f in families_of(r)}:
        direct = sum(e for e, r in zip(errors, records) if label in families_of(r)) / sum(errors)
        assert shares[label] == pytest.approx(direct, abs=1e-6), label
    assert shares["clean"] == 0.0
    assert shares["color_uniform"] + shares["texture_noise"] == pytest.approx(1.0)
    assert 0.55 < shares["color_uniform"] < 0.7   # about 0.08 / (0.08 + 0.02 + 0.03)
