"""The Gradio page: its HTTP API (gradio_client, runs everywhere) and a real headless Chromium driven by
Playwright (skips, saying why, where Debian's chromium is not installed). Both must return exactly
what the ``Refiner`` API returns for the same image and mask."""

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, load_photo
from pixperfect import Refiner
from pixperfect.app import build_app, mask_from_drawing
from helpers import tiny_refiner

CHROMIUM = os.environ.get("PIXPERFECT_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = ROOT / "docs" / "app_screenshot.png"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def refiner():
    return Refiner(tiny_refiner())


@pytest.fixture(scope="module")
def server(refiner):
    app = build_app(refiner)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory, cbsd68_photos):
    folder = tmp_path_factory.mktemp("app")
    photo = load_photo(cbsd68_photos[7], 128)
    image = Image.fromarray((photo.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    mask = np.zeros((128, 128), np.uint8)
    mask[40:90, 30:100] = 255
    image.save(folder / "image.png")
    Image.fromarray(mask).save(folder / "mask.png")
    drifted = np.clip(np.asarray(image).astype(np.int16) + 9, 0, 255).astype(np.uint8)  # a re-decoded background
    Image.fromarray(drifted).save(folder / "edited.png")
    return folder / "image.png", folder / "mask.png", folder / "edited.png"


def api_output(refiner, files, pool: int, region: str, seed: int, original=None) -> np.ndarray:
    image, mask = Image.open(files[0]), Image.open(files[1])
    out = refiner(image, mask, pool=pool, region=region, generator=torch.Generator().manual_seed(seed),
                  original=None if original is None else Image.open(original))
    return np.asarray(out)


def test_mask_from_drawing():
    layer = Image.new("RGBA", (6, 4), (0, 0, 0, 0))
    layer.putpixel((2, 1), (255, 0, 255, 128))
    mask = mask_from_drawing({"background": None, "layers": [layer], "composite": None})
    assert mask.shape == (4, 6) and mask.sum() == 255 and mask[1, 2] == 255
    assert mask_from_drawing({"layers": [Image.new("RGBA", (6, 4))]}) is None and mask_from_drawing(None) is None


def test_http_api_returns_the_refiner_output(server, refiner, files):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    compare, refined, download = client.predict(handle_file(str(files[0])), handle_file(str(files[1])), None, 3,
                                                "edit", 5, None, api_name="/refine")
    expected = api_output(refiner, files, 3, "edit", 5)
    assert np.array_equal(np.asarray(Image.open(refined)), expected)
    assert np.array_equal(np.asarray(Image.open(download)), expected)
    before, after = compare
    assert np.array_equal(np.asarray(Image.open(before).convert("RGB")), np.asarray(Image.open(files[0])))
    assert np.array_equal(np.asarray(Image.open(after)), expected)


def test_http_api_with_the_original_keeps_it_outside_the_mask(server, refiner, files):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    edited = (files[2], files[1])  # the drifted image is the edit; the photo is its original
    _, refined, _ = client.predict(handle_file(str(files[2])), handle_file(str(files[1])), None, 1, "edit", 0,
                                   handle_file(str(files[0])), api_name="/refine")
    got = np.asarray(Image.open(refined))
    assert np.array_equal(got, api_output(refiner, edited, 1, "edit", 0, original=files[0]))
    outside = np.asarray(Image.open(files[1])) == 0
    assert np.array_equal(got[outside], np.asarray(Image.open(files[0]))[outside])  # the original, not the drift
    with pytest.raises(Exception, match="region 'edit'"):
        client.predict(handle_file(str(files[2])), handle_file(str(files[1])), None, 1, "full", 0,
                       handle_file(str(files[0])), api_name="/refine")


def test_browser_upload_refine_and_compare(server, refiner, files, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (Debian) to run the browser test")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (PyPI, the dev extra) is not installed")
    import urllib.request

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server, wait_until="networkidle")
            page.locator("#image input[type=file]").set_input_files(str(files[0]))
            page.locator("#mask input[type=file]").set_input_files(str(files[1]))
            page.locator("#image img").first.wait_for(timeout=30_000)
            page.locator("#mask img").first.wait_for(timeout=30_000)
            page.locator("input[type=radio][value=full]").check()
            page.locator("#run").click()
            result = page.locator("#refined img").first
            result.wait_for(timeout=60_000)
            src = result.get_attribute("src")
            page.wait_for_timeout(500)
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        finally:
            browser.close()
    url = src if src.startswith("http") else server.rstrip("/") + "/" + src.lstrip("/")
    with urllib.request.urlopen(url, timeout=30) as r:
        shown = tmp_path / "shown.png"
        shown.write_bytes(r.read())
    assert np.array_equal(np.asarray(Image.open(shown)), api_output(refiner, files, 1, "full", 0))
    if not SCREENSHOT.is_file() or os.environ.get("PIXPERFECT_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "app.png", SCREENSHOT)  # the README's picture of the page


def test_app_cli_bad_checkpoint_is_one_line(tmp_path, capsys):
    from pixperfect.app import main

    assert main(["--checkpoint", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such folder" in err[0]
