"""The original project's web client, unchanged, against this API: a static page on a second loopback origin
in headless Chromium, doing what that client does (our own words, its request and its reading of the answer).

It reads a file into base64, POSTs `{"image": ...}` to /api/search with `Content-Type: application/json`
and `Access-Control-Allow-Origin: *` as request headers (so the browser sends a CORS preflight first), and
draws each `images_data` entry as <img src="data:image/png;base64,...">, or shows `message`.
Needs Chromium like tests/test_web_page.py (skipped with the reason when it is missing, except in CI).
"""

from __future__ import annotations

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.config import Settings
from core.engine import Engine
from core.server import ApiServer
from core.thumbnails import THUMBNAIL_SIZE
from tests.test_web_page import WAIT_S, browser, require_browser  # noqa: F401 - browser is a fixture

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "coins", "moon"]

CLIENT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>original client</title><link rel="icon" href="data:,"></head>
<body>
<input type="file" id="file">
<p id="message"></p>
<div id="images"></div>
<script>
const API = "%(api)s";
document.getElementById("file").addEventListener("change", (event) => {
  const reader = new FileReader();
  reader.onload = () => {
    const base64 = reader.result.split(",")[1];
    fetch(API + "/api/search", {
      method: "POST",
      headers: {"Content-Type": "application/json", "Access-Control-Allow-Origin": "*"},
      body: JSON.stringify({image: base64}),
    })
      .then((response) => response.json())
      .then((data) => {
        if (data.images_data) {
          for (const image of data.images_data) {
            const img = document.createElement("img");
            img.src = "data:image/png;base64," + image;
            document.getElementById("images").appendChild(img);
          }
        } else {
          document.getElementById("message").textContent = data.message;
        }
      })
      .catch((error) => { document.getElementById("message").textContent = "failed: " + error; });
  };
  reader.readAsDataURL(event.target.files[0]);
});
</script>
</body></html>
"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture(scope="module")
def setup(tmp_path_factory, photo_dir, shared_extractor):
    """The API on one loopback port allowing the page's origin, the client page on another."""
    require_browser()
    root = tmp_path_factory.mktemp("original-client")
    photos, site = root / "photos", root / "site"
    photos.mkdir()
    site.mkdir()
    for name in PHOTOS:
        shutil.copy(photo_dir / f"{name}.jpg", photos)
    page_server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    threading.Thread(target=page_server.serve_forever, daemon=True).start()
    page_origin = f"http://127.0.0.1:{page_server.server_port}"
    settings = Settings(data_dir=str(root / "data"), weights="random", api_port=0, api_cors_origins=page_origin)
    engine = Engine(settings, extractor=shared_extractor)
    assert engine.index([photos]).indexed == len(PHOTOS)
    try:
        with ApiServer(engine, settings) as api:
            (site / "index.html").write_text(CLIENT_PAGE % {"api": api.url}, encoding="utf-8")
            yield {"page": f"{page_origin}/index.html", "port": page_server.server_port, "photos": photos}
    finally:
        page_server.shutdown()
        page_server.server_close()
        engine.close()


def drawn_images(driver) -> list[int]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#images img')].map(i => i.complete ? i.naturalWidth : -1)")


def test_the_original_client_draws_the_results(setup, browser):  # noqa: F811 - the browser fixture
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(setup["page"])
    browser.find_element(By.ID, "file").send_keys(str(setup["photos"] / "coffee.jpg"))
    # Every photo passes 0.5 with the random weights (their similarities are 0.77-0.99): six images drawn.
    WebDriverWait(browser, WAIT_S).until(lambda d: len(drawn_images(d)) == len(PHOTOS)
                                         and all(w > 0 for w in drawn_images(d)))
    assert max(drawn_images(browser)) == THUMBNAIL_SIZE  # the thumbnails, at most THUMBNAIL_SIZE px a side
    assert browser.find_element(By.ID, "message").text == ""
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_an_origin_not_allowed_gets_nothing(setup, browser):  # noqa: F811 - the browser fixture
    """The same page from http://localhost:<port>, another origin: the preflight is not answered."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(setup["page"].replace("127.0.0.1", "localhost"))
    browser.find_element(By.ID, "file").send_keys(str(setup["photos"] / "coffee.jpg"))
    message = WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.ID, "message").text or None)
    assert message.startswith("failed:") and drawn_images(browser) == []
