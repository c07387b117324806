"""CLIP-T (evaluation.clip_t) with a tiny random CLIP built from a config and saved locally."""

import pytest
import torch

from evaluation.clip_t import ClipT


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from evaluation.random_sd import word_tokenizer

    folder = tmp_path_factory.mktemp("clip")
    tokenizer = word_tokenizer(folder / "tok")
    torch.manual_seed(0)
    config = CLIPConfig(text_config=dict(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                         num_attention_heads=2, num_hidden_layers=1, max_position_embeddings=16,
                                         bos_token_id=0, eos_token_id=1, pad_token_id=1),
                        vision_config=dict(hidden_size=16, intermediate_size=32, num_attention_heads=2,
                                           num_hidden_layers=1, image_size=16, patch_size=8),
                        projection_dim=8)
    CLIPModel(config).save_pretrained(folder / "model")
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 16},
                                                                 crop_size={"height": 16, "width": 16}),
                              tokenizer=tokenizer)
    processor.save_pretrained(folder / "model")
    return folder / "model"


def by_hand(folder, images, prompts):
    """max(100·cos, 0) from CLIPModel's own features, preprocessing done here (no torchmetrics)."""
    import torch.nn.functional as F
    from transformers import CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(folder).eval()
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    x = F.interpolate(images, size=(16, 16), mode="bicubic", align_corners=False)  # 16×16 inputs: resize is a no-op
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]
    with torch.no_grad():
        img = model.get_image_features(pixel_values=(x - mean) / std)
        tok = tokenizer(prompts, padding=True, return_tensors="pt")
        txt = model.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
    img = getattr(img, "pooler_output", img)
    txt = getattr(txt, "pooler_output", txt)
    raw = 100 * F.cosine_similarity(img, txt, dim=-1)
    return raw, raw.clamp_min(0)


def test_scores_equal_the_clamped_cosine_by_hand(tiny_clip):
    clip_t = ClipT(str(tiny_clip))
    assert clip_t.available and clip_t.reason is None
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(6, 3, 16, 16, generator=g) * 255).round() / 255  # exact in 8 bits
    prompts = ["a photo of a cat", "a red house", "blue sky", "a dog", "a tree", "a red house"]
    scores = clip_t(images, prompts)
    raw, expected = by_hand(tiny_clip, images, prompts)
    assert scores.shape == (6,)
    torch.testing.assert_close(scores, expected, atol=1e-3, rtol=1e-4)
    assert (scores > 0).all()
    torch.testing.assert_close(clip_t(images[2:3], prompts[2:3]), scores[2:3])  # per image, not batch means


def test_negative_cosines_are_clamped_to_zero(tiny_clip, tmp_path):
    """The same CLIP with its image projection negated: every cosine flips sign, every score becomes 0."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(tiny_clip)
    with torch.no_grad():
        model.visual_projection.weight.neg_()
    model.save_pretrained(tmp_path / "flipped")
    CLIPProcessor.from_pretrained(tiny_clip).save_pretrained(tmp_path / "flipped")
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    prompts = ["a photo of a cat", "a red house", "blue sky"]
    raw, _ = by_hand(tmp_path / "flipped", images, prompts)
    assert (raw < 0).all()
    assert torch.equal(ClipT(str(tmp_path / "flipped"))(images, prompts), torch.zeros(3))


def test_missing_model_is_unavailable_with_one_line_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = ClipT(str(tmp_path / "no_clip_here"))
    assert not missing.available and "no_clip_here" in missing.reason and "\n" not in missing.reason
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    hub = ClipT("openai/clip-vit-base-patch32")
    assert not hub.available and "local Hugging Face cache" in hub.reason and "\n" not in hub.reason
    with pytest.raises(RuntimeError, match="unavailable"):
        hub(torch.rand(1, 3, 8, 8), ["a cat"])


def test_bad_inputs(tiny_clip):
    clip_t = ClipT(str(tiny_clip))
    with pytest.raises(ValueError, match="prompts"):
        clip_t(torch.rand(2, 3, 16, 16), ["one"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clip_t(torch.rand(1, 3, 16, 16) * 255, ["a cat"])
