"""The refiner behind a real (tiny, random) diffusers StableDiffusionInpaintPipeline, end to end:
the one-line post-processor and the wrapper pipeline give exactly what calling the refiner by hand gives."""

import numpy as np
import pytest
import torch
from PIL import Image

from pixperfect import Refiner
from pixperfect.integrations import RefinedInpaintPipeline, refine_pipeline_output
from tiny_diffusers import tiny_inpaint_pipeline
from helpers import tiny_refiner


@pytest.fixture(scope="module")
def refiner():
    return Refiner(tiny_refiner())


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    p = tiny_inpaint_pipeline(tmp_path_factory.mktemp("sd"))
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8))
    mask = np.zeros((32, 32), np.uint8)
    mask[14:22, 14:22] = 255  # 8 px dilation+feather (32² image) leaves rows 0–5 untouched
    return image, Image.fromarray(mask)


def run(pipe, image, mask, **kw):
    return pipe("a cat", image=image, mask_image=mask, num_inference_steps=2, height=32, width=32,
                generator=torch.Generator().manual_seed(0), **kw)


def by_hand(refiner, image: Image.Image, mask: Image.Image, generated: Image.Image, **kw) -> np.ndarray:
    """What a user would write: refine the generated image given the original, back to uint8."""
    x = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None]
    g = torch.from_numpy(np.asarray(generated, np.float32) / 255).permute(2, 0, 1)[None]
    m = torch.from_numpy(np.asarray(mask, np.float32) / 255)[None, None]
    out = refiner(g, m, original=x, **kw)
    return (out[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_post_processor_equals_refining_by_hand(pipe, refiner, inputs):
    image, mask = inputs
    out = run(pipe, image, mask)
    refined = refine_pipeline_output(refiner, image, mask, out)
    assert type(refined) is type(out) and isinstance(refined.images[0], Image.Image)
    assert out.images[0] is not refined.images[0]  # the pipeline's own output is left as it was
    expected = by_hand(refiner, image, mask, out.images[0])
    assert np.array_equal(np.asarray(refined.images[0]), expected)
    outside = np.asarray(mask) == 0
    # everywhere outside the mask the result is the original, not the pipeline's re-decoded background
    assert np.array_equal(np.asarray(refined.images[0])[outside], np.asarray(image)[outside])
    assert not np.array_equal(np.asarray(out.images[0])[outside], np.asarray(image)[outside])
    # and the refiner did change the edit (the fixture's head is not the identity)
    inside = ~outside
    assert not np.array_equal(np.asarray(refined.images[0])[inside], np.asarray(out.images[0])[inside])


def test_wrapper_pipeline_equals_post_processor(pipe, refiner, inputs):
    image, mask = inputs
    wrapped = RefinedInpaintPipeline(pipe, refiner, pool=3, generator=torch.Generator().manual_seed(1))
    assert wrapped.vae is pipe.vae  # the wrapped pipeline's components stay reachable
    got = wrapped("a cat", image=image, mask_image=mask, num_inference_steps=2, height=32, width=32,
                  generator=torch.Generator().manual_seed(0)).images[0]
    expected = by_hand(refiner, image, mask, run(pipe, image, mask).images[0], pool=3,
                       generator=torch.Generator().manual_seed(1))
    assert np.array_equal(np.asarray(got), expected)


@pytest.mark.parametrize("output_type", ["pt"])  # "np" takes the same path as numpy input
def test_numpy_and_torch_outputs_keep_their_kind(pipe, refiner, inputs, output_type):
    image, mask = inputs
    out = run(pipe, image, mask, output_type=output_type, num_images_per_prompt=2)
    refined = refine_pipeline_output(refiner, image, mask, out.images, region="full")
    assert type(refined) is type(out.images) and refined.shape == out.images.shape
    gen = out.images if output_type == "pt" else torch.from_numpy(out.images).permute(0, 3, 1, 2)
    x = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None]
    m = torch.from_numpy(np.asarray(mask, np.float32) / 255)[None, None]
    expected = refiner(m * gen + (1 - m) * x, m.expand(2, -1, -1, -1), region="full")
    got = refined if output_type == "pt" else torch.from_numpy(refined).permute(0, 3, 1, 2)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_output_at_a_rounded_size_comes_back_at_the_original_size(refiner):
    image = Image.new("RGB", (37, 29), (120, 80, 40))
    mask = Image.new("L", (37, 29), 0)
    mask.paste(255, (10, 8, 20, 18))
    generated = [Image.new("RGB", (32, 24), (200, 10, 10))]  # what a pipeline rounding to 8 px returns
    refined = refine_pipeline_output(refiner, image, mask, generated)
    assert refined[0].size == (37, 29)
    assert np.array_equal(np.asarray(refined[0])[:, :2], np.asarray(image)[:, :2])


def test_latent_output_is_refused(pipe, refiner, inputs):
    image, mask = inputs
    with pytest.raises(ValueError, match="latent"):
        RefinedInpaintPipeline(pipe, refiner)("a cat", image=image, mask_image=mask, output_type="latent")


def test_wrapper_finds_image_and_mask_by_the_pipelines_signature(refiner, inputs):
    """FluxFillPipeline-style: ``(prompt, prompt_2, image, mask_image)``; the wrapper must not take prompt_2."""
    image, mask = inputs
    generated = Image.new("RGB", image.size, (250, 0, 0))

    class FillLike:
        def __call__(self, prompt=None, prompt_2=None, image=None, mask_image=None):
            return [generated]

    got = RefinedInpaintPipeline(FillLike(), refiner)("a cat", "a cat too", image, mask)[0]
    assert np.array_equal(np.asarray(got), by_hand(refiner, image, mask, generated))
