"""The web page in a real headless Chromium against a real server thread: upload, results, refine, back.

Needs Debian's `chromium` and `chromium-driver` and `pip install selenium`. Skipped (with the reason) when
they are missing, except in CI (CI=true), where it must run. IMAGE_SEARCH_TEST_WEB_SCREENSHOT=path also
saves the screenshot there (that is how docs/web.png is made).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from core.config import Settings
from core.engine import Engine
from core.server import ApiServer

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "coins", "moon", "colorwheel", "china", "flower"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else shutil.which("chromedriver")
WAIT_S = 60


def require_browser() -> None:
    missing = [name for name, found in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER),
                                        ("selenium", importlib.util.find_spec("selenium"))) if not found]
    if not missing:
        return
    how = "apt-get install -y chromium chromium-driver; pip install selenium"
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser test must run in CI but {', '.join(missing)} is missing ({how})")
    pytest.skip(f"{', '.join(missing)} not installed ({how})")


@pytest.fixture(scope="module")
def server(tmp_path_factory, photo_dir, shared_extractor):
    require_browser()
    root = tmp_path_factory.mktemp("web-index")
    folder = root / "photos"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(photo_dir / f"{name}.jpg", folder)
    settings = Settings(data_dir=str(root / "data"), weights="random", api_port=0)
    engine = Engine(settings, extractor=shared_extractor)
    assert engine.index([folder]).indexed == len(PHOTOS)
    with ApiServer(engine, settings) as running:
        running.photos = folder
        running.engine = engine
        yield running
    engine.close()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--disable-sync", "--window-size=1360,940", f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def card_ids(driver) -> list[str]:
    # Read in one script: the grid may be re-rendered between two WebDriver calls (stale elements).
    return driver.execute_script("return [...document.querySelectorAll('#results .card')].map(c => c.dataset.id)")


def visible_images_loaded(driver) -> bool:
    return driver.execute_script(
        "return [...document.images].filter(i => !i.hidden && i.getBoundingClientRect().top < innerHeight)"
        ".every(i => i.complete && i.naturalWidth > 0)")


def test_search_refine_and_walk_back(server, browser, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException])
    browser.get(server.url + "/")
    wait.until(lambda d: f"{len(PHOTOS)} images" in d.find_element(By.ID, "status").text)
    assert browser.find_element(By.ID, "empty").is_displayed()

    # Upload through the file input: all photos come back, the query photo itself first.
    browser.find_element(By.ID, "file-input").send_keys(str(server.photos / "coffee.jpg"))
    wait.until(lambda d: len(card_ids(d)) == len(PHOTOS) and "your image" in d.find_element(By.ID, "summary").text)
    first_results = card_ids(browser)
    names = [e.get_attribute("textContent") for e in browser.find_elements(By.CSS_SELECTOR, "#results .name")]
    assert names[0] == "coffee.jpg"
    scores = [float(e.text) for e in browser.find_elements(By.CSS_SELECTOR, "#results .score")]
    assert scores == sorted(scores, reverse=True)

    # Click the second result: the results are now similar to it, and the trail has two steps.
    clicked = first_results[1]
    browser.find_element(By.CSS_SELECTOR, f'.card[data-id="{clicked}"] .card-hit').click()
    wait.until(lambda d: card_ids(d)[:1] == [clicked] and len(d.find_elements(By.CSS_SELECTOR, "#trail .crumb")) == 2)
    second_results = card_ids(browser)
    assert second_results != first_results
    assert "is-query" in browser.find_element(By.CSS_SELECTOR, "#results .card").get_attribute("class")

    # And again from there: a chain of three.
    third = next(i for i in second_results if i not in (clicked, first_results[0]))
    browser.find_element(By.CSS_SELECTOR, f'.card[data-id="{third}"] .card-hit').click()
    wait.until(lambda d: card_ids(d)[:1] == [third])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#trail .crumb")) == 3

    # Walk back: the Back button to the second step, the first crumb to the upload's results.
    browser.find_element(By.ID, "back").click()
    wait.until(lambda d: card_ids(d) == second_results)
    wait.until(visible_images_loaded)
    browser.save_screenshot(str(tmp_path / "web.png"))
    if target := os.environ.get("IMAGE_SEARCH_TEST_WEB_SCREENSHOT"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(target)
    assert (tmp_path / "web.png").stat().st_size > 10_000

    browser.find_element(By.CSS_SELECTOR, "#trail .crumb:first-child .crumb-button").click()
    wait.until(lambda d: card_ids(d) == first_results)

    # The min-score control filters: only the query image itself is that similar to itself.
    browser.execute_script(
        "const s = document.getElementById('min-score'); s.value = '1';"
        "s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change'));")
    wait.until(lambda d: len(card_ids(d)) <= 1)

    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe  # no script errors, no blocked resources (CSP), no failed requests


def test_defaults_as_the_desktop_a_name_filter_and_names_elided_in_the_middle(server, browser):
    """Issue 14: 50 results as the desktop app, a filter box (the API's `text`), "orig_012…copy.jpg"."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException])
    browser.get(server.url + "/")
    wait.until(lambda d: f"{len(PHOTOS)} images" in d.find_element(By.ID, "status").text)
    assert browser.find_element(By.ID, "k").get_attribute("value") == "50"  # desktop/preferences.py DEFAULT_RESULTS
    browser.find_element(By.ID, "file-input").send_keys(str(server.photos / "coffee.jpg"))
    wait.until(lambda d: len(card_ids(d)) == len(PHOTOS))

    browser.find_element(By.ID, "words").send_keys("rock")
    wait.until(lambda d: len(card_ids(d)) == 1)
    assert browser.find_element(By.CSS_SELECTOR, "#results .name").get_attribute("textContent") == "rocket.jpg"
    assert "names with “rock”" in browser.find_element(By.ID, "summary").text
    browser.find_element(By.ID, "words").send_keys("zzz")
    wait.until(lambda d: not card_ids(d) and "Clear the words" in d.find_element(By.ID, "summary").text)
    browser.find_element(By.ID, "words").clear()
    browser.execute_script("document.getElementById('words').dispatchEvent(new Event('input'))")
    wait.until(lambda d: len(card_ids(d)) == len(PHOTOS))

    # A long name in a card: its start is cut with an ellipsis, its end shows whole.
    shown = browser.execute_script("""
        const step = {kind: "upload", label: "x"};
        const item = card({id: "long", name: "orig_012__holiday_in_the_mountains_and_the_lakes_copy.jpg",
                           score: 0.5, width: 1, height: 1, thumbnail_url: "data:,", image_url: "data:,"}, step);
        document.getElementById("results").prepend(item);
        const start = item.querySelector(".name-start"), end = item.querySelector(".name-end");
        return [start.scrollWidth > start.clientWidth, end.scrollWidth <= end.clientWidth, end.textContent,
                getComputedStyle(start).textOverflow, item.querySelector(".name").title];""")
    assert shown == [True, True, "s_copy.jpg", "ellipsis", "orig_012__holiday_in_the_mountains_and_the_lakes_copy.jpg"]
    # Every card shows its name's end whole; a short name is shown whole.
    assert browser.execute_script("""return [...document.querySelectorAll('#results .name-end')]
        .every(s => s.scrollWidth <= s.clientWidth && s.getBoundingClientRect().right
                    <= s.closest('.card').getBoundingClientRect().right)""")
    coffee = browser.execute_script("""const n = [...document.querySelectorAll('#results .name')]
        .find(n => n.title === 'coffee.jpg'); const s = n.closest('.meta').querySelector('.score');
        return [n.textContent, Math.abs(n.getBoundingClientRect().bottom - s.getBoundingClientRect().bottom) < 4];""")
    assert coffee == ["coffee.jpg", True]  # whole, and on the score's line


def test_a_non_image_shows_the_servers_reason(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    fake = tmp_path / "notes.png"  # an image name, so the page sends it, but not an image inside
    fake.write_text("these are not pixels")
    browser.get(server.url + "/")
    browser.find_element(By.ID, "file-input").send_keys(str(fake))
    message = WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "message").is_displayed()
                                                   and d.find_element(By.ID, "message"))
    assert "Not a usable image" in message.text and "not a recognised image format" in message.text


def test_token_mode_asks_for_the_token_and_still_shows_thumbnails(server, browser):
    """With a token, <img src> cannot authenticate: the page asks for the token and loads images as blobs."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    settings = server.engine.settings.replace(api_token="web-t0ken", api_port=0)
    with ApiServer(server.engine, settings) as guarded:
        wait = WebDriverWait(browser, WAIT_S)
        browser.get(guarded.url + "/")
        dialog = wait.until(lambda d: d.find_element(By.ID, "token-dialog").is_displayed()
                            and d.find_element(By.ID, "token-dialog"))
        dialog.find_element(By.ID, "token-input").send_keys("web-t0ken")
        dialog.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: f"{len(PHOTOS)} images" in d.find_element(By.ID, "status").text)
        browser.find_element(By.ID, "file-input").send_keys(str(server.photos / "moon.jpg"))
        wait.until(lambda d: len(card_ids(d)) == len(PHOTOS))
        wait.until(visible_images_loaded)
        sources = browser.execute_script("return [...document.querySelectorAll('#results img')].map(i => i.src)")
        assert sources and all(src.startswith("blob:") for src in sources if src)
