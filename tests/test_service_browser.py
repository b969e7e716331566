"""The web page at `/` in a real headless Chromium (Debian's `chromium` + `chromium-driver`).

A small gallery of synthetic products (rendered offline, tiny random-weight model, no
download) is served by a real `itemrec serve` process; the browser uploads photos and
the test reads the result off the page and checks it against the JSON API's answer.
`.ci/run` installs the browser; without it the test is skipped, except under
``ITEMREC_REQUIRE_DATA=1`` (CI), where it fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
requests = pytest.importorskip("requests")

from itemrec.embedder import ImageEmbedder  # noqa: E402
from itemrec.gallery import Gallery  # noqa: E402
from service_helpers import start_server, stop_server, tiny_model  # noqa: E402

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1100,900"]
SIZE = 32
TOKEN = "browser-token"
N_ENROLLED, N_UNKNOWN = 6, 2


def _missing(what: str) -> None:
    if os.environ.get("ITEMREC_REQUIRE_DATA") == "1":
        pytest.fail(f"{what} is missing; .ci/run installs it (apt-get install chromium chromium-driver)")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from itemrec.data.synthetic import write_catalogue

    tmp = tmp_path_factory.mktemp("browser")
    ds = write_catalogue(tmp / "cat", n_products=N_ENROLLED + N_UNKNOWN, photos_per_product=1, image_size=96, seed=3)
    catalogue = sorted((tmp / "cat" / "catalogue").glob("*.jpg"))
    assert len(catalogue) == N_ENROLLED + N_UNKNOWN, ds
    model_path = ImageEmbedder(tiny_model(SIZE), SIZE).save(tmp / "model.keras")
    g = Gallery.create(tmp / "gallery", ImageEmbedder.load(model_path))
    for p in catalogue[:N_ENROLLED]:
        g.enroll(p.stem, p.stem.replace("_", " ").title(), paths=[p], attributes={"aisle": len(p.stem)})
    # threshold halfway between the unknowns' best similarity and an exact match (1.0)
    s_unknown = max(g.query(paths=[p], k=1)[0].matches[0].similarity for p in catalogue[N_ENROLLED:])
    assert s_unknown < 0.995, s_unknown  # the tiny model does tell the products apart (an exact match is 1.0)
    g.set_threshold((1.0 + s_unknown) / 2)
    g.close()
    proc, url = start_server(tmp / "gallery", model_path, "--token", TOKEN)
    yield {"url": url, "known": catalogue[:N_ENROLLED], "unknown": catalogue[N_ENROLLED:], "tmp": tmp}
    stop_server(proc)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (Path(CHROMIUM).is_file() and Path(DRIVER).is_file()):
        _missing("headless Chromium (/usr/bin/chromium, /usr/bin/chromedriver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("the selenium package")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    profile = tmp_path_factory.mktemp("chromium-profile")
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _upload_and_read(driver, photo: Path) -> tuple[str, str, list[tuple[str, str]]]:
    """Choose ``photo`` on the page; ``(verdict class, verdict text, [(item_id, score text)])``."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "photo").send_keys(str(photo))
    verdict = driver.find_element(By.ID, "verdict")
    _wait(driver, lambda d: verdict.get_attribute("class") in ("known", "unknown", "error"))
    rows = [(li.get_attribute("data-item-id"), li.find_element(By.CLASS_NAME, "score").text)
            for li in driver.find_elements(By.CSS_SELECTOR, "#matches li.match")]
    return verdict.get_attribute("class"), verdict.text, rows


def _api(url: str, photo: Path, k: int = 5) -> dict:
    r = requests.post(f"{url}/recognize?k={k}", data=photo.read_bytes(), headers={"Content-Type": "image/jpeg"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_page_recognises_an_upload_shows_thumbnails_and_unknown(served, browser):
    from selenium.webdriver.common.by import By

    url = served["url"]
    browser.get(url + "/")
    _wait(browser, lambda d: f"{N_ENROLLED} items" in d.find_element(By.ID, "status").text)
    photo = served["known"][2]
    kind, text, rows = _upload_and_read(browser, photo)
    truth = _api(url, photo)  # the JSON API's answer, read independently of the page
    assert truth["item_id"] == photo.stem and not truth["unknown"]
    assert kind == "known" and text == f"{truth['matches'][0]['name']} ({photo.stem})"
    assert rows == [(m["item_id"], f"{m['similarity']:.3f}") for m in truth["matches"]]
    # every match shows its catalogue thumbnail, loaded
    _wait(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#matches img.thumb')].every(i => i.complete && i.naturalWidth > 0)"))
    shot = served["tmp"] / "page.png"
    browser.save_screenshot(str(shot))
    if os.environ.get("ITEMREC_SCREENSHOT"):  # refresh the README image: ITEMREC_SCREENSHOT=readme_images/...
        shutil.copyfile(shot, os.environ["ITEMREC_SCREENSHOT"])
    assert shot.stat().st_size > 10_000

    stranger = served["unknown"][0]
    kind, text, rows = _upload_and_read(browser, stranger)
    truth = _api(url, stranger)
    assert truth["unknown"] and kind == "unknown"
    assert text == f"unknown (closest: {truth['matches'][0]['name']}, {truth['matches'][0]['similarity']:.3f})"


def test_page_enrols_behind_the_token(served, browser):
    from selenium.webdriver.common.by import By

    url, newcomer = served["url"], served["unknown"][1]
    browser.get(url + "/")
    browser.find_element(By.ID, "item-id").send_keys("newcomer")
    browser.find_element(By.ID, "item-name").send_keys("Newcomer")
    browser.find_element(By.ID, "item-photos").send_keys(str(newcomer))
    browser.find_element(By.CSS_SELECTOR, "#enrol-form button").click()
    out = browser.find_element(By.ID, "enrol-result")
    _wait(browser, lambda d: out.get_attribute("class") in ("known", "error"))
    assert out.get_attribute("class") == "error" and "401: missing bearer token" in out.text  # no token: refused
    assert "newcomer" not in [i["item_id"] for i in requests.get(f"{url}/items", timeout=10).json()["items"]]

    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#enrol-form button").click()
    _wait(browser, lambda d: out.text.startswith("enrolled"))
    assert out.text == "enrolled newcomer: 1 photo(s)"
    assert "newcomer" in [i["item_id"] for i in requests.get(f"{url}/items", timeout=10).json()["items"]]
    kind, text, rows = _upload_and_read(browser, newcomer)
    assert kind == "known" and text == "Newcomer (newcomer)" and rows[0][0] == "newcomer"
