"""End to end in headless Chromium: upload a Kodak crop, press the button, see the images and the bpp."""

from pathlib import Path

import pytest
from conftest import load_script
from PIL import Image

pytest.importorskip("gradio")
pytest.importorskip("selenium")

ROOT = Path(__file__).resolve().parents[1]


def _screenshot_module():
    """examples/gradio_app/screenshot.py, the same driver that makes docs/demo.png."""
    return load_script("examples/gradio_app/screenshot.py")


browser = _screenshot_module()
pytestmark = pytest.mark.skipif(browser.chromium_paths() is None,
                                reason="needs Debian's chromium + chromium-driver (installed by .ci/run)")


def test_upload_compress_and_see_the_result(tiny_model_dir, tmp_path):
    from rdc_diffusers.demo import build_demo

    Image.open(ROOT / "examples/images/kodim23.png").crop((256, 128, 448, 256)).save(tmp_path / "kodim23_crop.png")
    demo = build_demo({"tiny-rdc": tiny_model_dir})
    port = browser.free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    driver = browser.start_chromium()
    try:
        shown = browser.compress_in_browser(driver, f"http://127.0.0.1:{port}/", tmp_path / "kodim23_crop.png")
        driver.save_screenshot(str(tmp_path / "page.png"))
    finally:
        driver.quit()
        demo.close()

    assert "192×128" in shown["stats"] and "bpp" in shown["stats"]
    assert "refined (ddim" in shown["stats"]
    assert len(shown["images"]) >= 3  # original, fast and refined, served as PNG
    assert Image.open(tmp_path / "page.png").size[0] > 0
