"""Drive the demo in headless Chromium: upload an image, run it, wait for the result, optionally save a screenshot.

Makes docs/demo.png (with the bundled model) and is what the browser test runs. Needs Debian's `chromium` and
`chromium-driver` and `pip install selenium`:

    python examples/gradio_app/screenshot.py examples/images/kodim23.png -o docs/demo.png
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""From ../shared/docs/ENVIRONMENT.md: headless, and nothing that tries to reach the network."""


def chromium_paths() -> tuple[str, str] | None:
    """(browser, driver) from the Debian packages, or None when they are not installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_chromium(width: int = 1400, height: int = 1200):
    """A headless Chromium with a fresh profile; the caller quits it (its profile folder goes with the process)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError("install chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='rdc-chromium-')}",
                 f"--window-size={width},{height}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(paths[1]), options=options)


def compress_in_browser(driver, url: str, image: Path, timeout: float = 120) -> dict:
    """Upload ``image`` on the "Compress an image" tab, press the button, wait for the stats; return what shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
    upload.send_keys(str(Path(image).resolve()))
    button = wait.until(ec.element_to_be_clickable((By.XPATH, "//button[contains(., 'Compress and decode')]")))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "img[src*='/file=']") or
               d.find_elements(By.CSS_SELECTOR, "img[src^='blob:'], img[src^='data:']"))
    button.click()
    wait.until(lambda d: "bpp" in d.find_element(By.ID, "rdc-stats").text)
    # The result images (original, fast, refined, and the slider pair) are PNGs the app wrote as image.png.
    wait.until(lambda d: len(_result_images(d)) >= 3)
    stats = driver.find_element(By.ID, "rdc-stats").text
    driver.execute_script("document.getElementById('rdc-stats').scrollIntoView({block: 'start'});")
    return {"stats": stats, "images": _result_images(driver)}


def _result_images(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    sources = [img.get_attribute("src") or "" for img in driver.find_elements(By.TAG_NAME, "img")]
    return [s for s in sources if "/file=" in s and s.endswith("/image.png")]  # what the app made, not the upload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/demo.png"))
    parser.add_argument("--model", action="append", default=None, help="default: every bundled model")
    args = parser.parse_args()

    from rdc_diffusers.demo import build_demo

    demo = build_demo(args.model)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    driver = start_chromium()
    try:
        shown = compress_in_browser(driver, f"http://127.0.0.1:{port}/", args.image)
        driver.execute_script("window.scrollTo(0, 0);")
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1400, min(max(height, 900) + 200, 2400))  # + the browser's own bars
        driver.save_screenshot(str(args.output))
        print(shown["stats"])
        print(f"saved {args.output}")
    finally:
        driver.quit()
        demo.close()


if __name__ == "__main__":
    main()
