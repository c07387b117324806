"""The CPU speed paths (issue 13) give the output of the plain formulation within float rounding."""

import sys

import pytest
import torch
import torch.nn.functional as F

from pixperfect import Refiner
from pixperfect.inference.memory import retain_freed_memory, retention_supported
from pixperfect.models import CMGANRefiner
from pixperfect.models.blocks import DownBlock, ModulatedConv2d, SpatialModulationBlock, lrelu
from pixperfect.models.refiner import square_max_pool

TINY = dict(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, ffc_global_ratio=0.5)


def _reference_modulated(conv: ModulatedConv2d, x, style, out_scale=None):
    """The batched formulation: scale the input, shared conv, demodulate, bias, output scale."""
    s = conv.affine(style)
    w = conv.weight * conv.scale
    out = F.conv2d(x * s[:, :, None, None], w, padding=conv.padding)
    if conv.demodulate:
        out = out * torch.rsqrt(s.square() @ w.square().sum(dim=(2, 3)).t() + 1e-8)[:, :, None, None]
    out = out + conv.bias[None, :, None, None]
    return out if out_scale is None else out * out_scale[:, :, None, None]


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("with_scale", [False, True])
def test_batch_one_modulated_conv_folds_style_into_the_weight(demodulate, with_scale):
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, style_dim=7, demodulate=demodulate)
    torch.nn.init.normal_(conv.bias)
    x, style = torch.randn(1, 6, 11, 9), torch.randn(1, 7)
    scale = torch.rand(1, 5) + 0.5 if with_scale else None
    with torch.no_grad():
        out = conv(x, style, out_scale=scale)
        ref = _reference_modulated(conv, x, style, scale)
        batched = conv(torch.cat([x, torch.randn_like(x)]), torch.cat([style, torch.randn_like(style)]),
                       out_scale=None if scale is None else torch.cat([scale, torch.rand_like(scale)]))
    assert (out - ref).abs().max() < 1e-5 * ref.abs().max()
    assert (batched[:1] - ref).abs().max() < 1e-5 * ref.abs().max()  # N > 1: the unfolded path


@pytest.mark.parametrize("batch", [1, 3])
def test_spatial_modulation_block_matches_its_formula(batch):
    """A·h → modulated conv → spatial-aware demodulation → lrelu(· + B) + skip, as first written."""
    torch.manual_seed(0)
    block = SpatialModulationBlock(6, skip_ch=4, style_dim=7)
    torch.nn.init.normal_(block.to_affine.weight, std=0.1)
    h, skip, style = torch.randn(batch, 6, 10, 12), torch.randn(batch, 4, 10, 12), torch.randn(batch, 7)
    with torch.no_grad():
        gamma, beta = block.to_affine(h).chunk(2, dim=1)
        a = 1.0 + gamma
        out = _reference_modulated(block.conv, h * a, style)
        s = block.conv.affine(style)
        w = block.conv.weight * block.conv.scale
        var = (s.square() @ w.square().sum(dim=(2, 3)).t()) * a.square().mean(dim=(1, 2, 3))[:, None]
        ref = lrelu(out * torch.rsqrt(var + 1e-8)[:, :, None, None] + beta) + block.skip(skip)
        got = block(h, skip, style)
    assert (got - ref).abs().max() < 1e-5 * ref.abs().max()


def test_down_block_in_place_equals_its_formula():
    torch.manual_seed(0)
    block = DownBlock(5, 7)
    x = torch.randn(2, 5, 12, 10)
    with torch.no_grad():
        ref = lrelu(block.conv2(lrelu(block.conv1(x))) + block.skip(F.avg_pool2d(x, 2))) / 2**0.5
        got = block(x)
    assert (got - ref).abs().max() < 1e-6 * ref.abs().max()


def test_in_place_blocks_still_train():
    """The in-place activations leave autograd's saved tensors intact: gradients equal the
    out-of-place formula's (batch 1 goes through the folded modulated conv)."""
    torch.manual_seed(0)
    block = SpatialModulationBlock(6, skip_ch=4, style_dim=7)
    torch.nn.init.normal_(block.to_affine.weight, std=0.1)
    h, skip, style = torch.randn(1, 6, 8, 8), torch.randn(1, 4, 8, 8), torch.randn(1, 7)
    block(h, skip, style).square().sum().backward()
    got = {n: p.grad.clone() for n, p in block.named_parameters()}
    block.zero_grad()
    gamma, beta = block.to_affine(h).chunk(2, dim=1)
    a = 1.0 + gamma
    s = block.conv.affine(style)
    w = block.conv.weight * block.conv.scale
    var = (s.square() @ w.square().sum(dim=(2, 3)).t()) * a.square().mean(dim=(1, 2, 3))[:, None]
    out = _reference_modulated(block.conv, h * a, style) * torch.rsqrt(var + 1e-8)[:, :, None, None]
    (lrelu(out + beta) + block.skip(skip)).square().sum().backward()
    for name, p in block.named_parameters():
        torch.testing.assert_close(got[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)


def _random_tiny_refiner() -> CMGANRefiner:
    """All zero-initialised layers (output head, spatial scale, global affine) made non-zero."""
    torch.manual_seed(0)
    model = CMGANRefiner(**TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().max() == 0:
                p.normal_(std=0.05)
    return model


def test_refiner_batch_one_equals_the_batched_path():
    """Batch 1 (folded modulated convs, in-place activations) vs the same image inside a batch of
    2 (the unfolded path): the same refined image within 1e-4."""
    model = _random_tiny_refiner()
    x, m = torch.rand(2, 3, 40, 36), torch.zeros(2, 1, 40, 36)
    m[..., 10:30, 8:20] = 1
    with torch.no_grad():
        one = model(x[:1], m[:1])
        two = model(x, m)
    assert (one - x[:1]).abs().mean() > 1e-3  # not the identity
    assert (one - two[:1]).abs().max() < 1e-4


@pytest.mark.parametrize("radius", [2, 5, 16])
def test_square_max_pool_equals_max_pool2d(radius):
    torch.manual_seed(0)
    x = (torch.rand(2, 1, 70, 45) > 0.8).float() * torch.rand(2, 1, 70, 45)
    ref = F.max_pool2d(x, 2 * radius + 1, stride=1, padding=radius)
    assert torch.equal(square_max_pool(x, radius), ref)


def _faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.mark.skipif(not sys.platform.startswith("linux") or not retention_supported(), reason="glibc only")
def test_retained_memory_is_reused_without_page_faults_and_changes_nothing():
    model = _random_tiny_refiner()
    x, m = torch.rand(1, 3, 48, 48), torch.zeros(1, 1, 48, 48)
    m[..., 12:30, 12:30] = 1
    try:
        plain = Refiner(model, retain_memory=False).forward(x, m)
        assert retain_freed_memory(True)
        retained = Refiner(model, retain_memory=True).forward(x, m)
        assert torch.equal(plain, retained)
        pages = 64 * 2**20 // 4096
        torch.ones(16 * 2**20).sum()  # 64 MiB: the heap grows once ...
        before = _faults()
        torch.ones(16 * 2**20).sum()  # ... and the same block is reused
        assert _faults() - before < pages // 10
    finally:
        retain_freed_memory(False)


def test_down_block_gradients_equal_the_formula():
    torch.manual_seed(0)
    block = DownBlock(5, 7)
    x = torch.randn(2, 5, 12, 10)
    block(x).square().sum().backward()
    got = {n: p.grad.clone() for n, p in block.named_parameters()}
    block.zero_grad()
    ref = lrelu(block.conv2(lrelu(block.conv1(x))) + block.skip(F.avg_pool2d(x, 2))) / 2**0.5
    ref.square().sum().backward()
    for name, p in block.named_parameters():
        torch.testing.assert_close(got[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)
