"""Keywords end to end on both backends: tags through the CLI and the API, words-only search, date and
camera filters, matching by the one rule (NFC/NFD, casefold), tags surviving a re-index and a rename."""

from __future__ import annotations

import json
import os
import unicodedata

import numpy as np
import pytest
from PIL import Image

from core.cli import main
from core.config import Settings
from core.engine import Engine
from core.store import SearchFilter
from core.store.annotations import PhotoFilter
from tests.test_web_page import browser, server  # noqa: F401 - fixtures of the browser test

pytest_plugins = ["tests.es_fixtures"]

ZURICH = unicodedata.normalize("NFD", "Zürich.jpg")  # a decomposed name, as macOS writes them
PHOTOS = {  # name: (DateTimeOriginal, OffsetTimeOriginal, Make, Model)
    "beach.jpg": ("2024:05:01 10:00:00", "+02:00", "Canon", "Canon EOS R5"),
    ZURICH: ("2024:05:02 23:30:00", None, "NIKON CORPORATION", "NIKON D750"),
    "city.jpg": ("2024:05:03 08:00:00", None, "Apple", "iPhone 12"),
    "old.jpg": (None, None, None, None),
}


def write_photo(path, seed: int, taken=None, offset=None, make=None, model=None) -> None:
    exif = Image.Exif()
    if make:
        exif[0x010F], exif[0x0110] = make, model
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken
    if offset:
        exif.get_ifd(0x8769)[0x9011] = offset
    pixels = np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", exif=exif.tobytes())


@pytest.fixture(params=["embedded", "elasticsearch"])
def setup(request, tmp_path, shared_extractor):
    """(engine, CLI global options, photo folder) on a freshly indexed library."""
    cli = ["--data-dir", str(tmp_path / "data"), "--weights", "random"]
    settings = Settings(data_dir=str(tmp_path / "data"), weights="random")
    if request.param == "elasticsearch":
        url, alias = request.getfixturevalue("es_url"), request.getfixturevalue("es_alias")
        settings = settings.replace(backend="elasticsearch", es_url=url, es_index=alias)
        cli += ["--backend", "elasticsearch", "--es-url", url, "--es-index", alias]
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed, (name, exif) in enumerate(PHOTOS.items()):
        write_photo(folder / name, seed, *exif)
    os.utime(folder / "old.jpg", (1_500_000_000, 1_500_000_000))
    engine = Engine(settings, extractor=shared_extractor)
    report = engine.index([folder])
    assert report.indexed == 4 and not report.skipped
    yield engine, cli, folder
    engine.close()


def cli_json(capsys, *args) -> dict:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def names(results) -> list[str]:
    return [unicodedata.normalize("NFC", r["name"]) for r in results]


def test_metadata_is_read_while_indexing(setup):
    engine, _, folder = setup
    notes = engine.annotations_of([engine.resolve(str(folder / n)).id for n in PHOTOS])
    beach, zurich, city, old = (notes[engine.resolve(str(folder / n)).id] for n in PHOTOS)
    assert beach.taken == "2024-05-01T10:00:00+02:00" and beach.camera == "Canon EOS R5"
    assert zurich.taken == "2024-05-02T23:30:00" and zurich.camera == "NIKON D750"
    assert city.camera == "Apple iPhone 12" and city.taken_source == "exif"
    assert old.taken_source == "mtime" and old.camera is None

    # An image indexed before annotations existed (no row), here tagged first: the next run reads its EXIF.
    beach_id = engine.resolve(str(folder / "beach.jpg")).id
    engine.annotations().forget([beach_id])
    engine.set_tags(beach_id, ["kept"])
    assert engine.annotations_of([beach_id])[beach_id].taken is None
    engine.index([folder])
    assert engine.annotations_of([beach_id])[beach_id].taken == "2024-05-01T10:00:00+02:00"
    assert engine.tags(beach_id) == ["kept"]


def test_tags_round_trip_through_the_cli_and_survive_a_reindex_and_a_rename(setup, capsys):
    engine, cli, folder = setup
    city_id = engine.resolve(str(folder / "city.jpg")).id
    out = cli_json(capsys, *cli, "tag", str(folder / "beach.jpg"), city_id, "--add", " Café ", "--add", "Straße")
    assert sorted(i["tags"] for i in out["images"]) == [["Café", "Straße"]] * 2
    assert main([*cli, "tag", city_id, "--remove", "CAFÉ"]) == 0  # removed by the folded form
    assert "city.jpg: Straße" in capsys.readouterr().out
    assert cli_json(capsys, *cli, "tags")["tags"] == [{"tag": "Straße", "count": 2}, {"tag": "Café", "count": 1}]
    assert main([*cli, "tag", city_id, "--add", "a,b"]) == 1
    assert "comma" in capsys.readouterr().err

    # A decomposed query matches a composed tag; STRASSE matches Straße.
    assert names(cli_json(capsys, *cli, "search", "--text", "cafe\u0301")["results"]) == ["beach.jpg"]
    out = cli_json(capsys, *cli, "search", "--text", "STRASSE")
    assert out["query"] is None and out["text"] == "STRASSE"
    assert names(out["results"]) == ["city.jpg", "beach.jpg"]  # newest first
    assert all(r["score"] is None for r in out["results"])
    assert out["results"][1]["tags"] == ["Café", "Straße"] and out["results"][1]["taken"].startswith("2024-05-01")

    # A re-index with changed content keeps the id and the tags; so does a rename.
    write_photo(folder / "city.jpg", 99, "2024:05:03 08:00:00", None, "Apple", "iPhone 12")
    os.rename(folder / "beach.jpg", folder / "renamed.jpg")
    report = engine.index([folder])
    assert report.indexed == 1
    assert engine.resolve(str(folder / "city.jpg")).id == city_id
    assert engine.tags(city_id) == ["Straße"]
    assert engine.tags(str(folder / "renamed.jpg")) == ["Café", "Straße"]
    # Words may match in different fields: the new name and a tag.
    assert names(cli_json(capsys, *cli, "search", "--text", "renamed café")["results"]) == ["renamed.jpg"]
    assert cli_json(capsys, *cli, "search", "--text", "beach")["results"] == []


def test_words_only_search_dates_and_camera(setup, capsys):
    engine, cli, _ = setup
    out = cli_json(capsys, *cli, "search", "--text", "")
    assert names(out["results"]) == ["city.jpg", "Zürich.jpg", "beach.jpg", "old.jpg"]  # undated: mtime 2017
    assert names(cli_json(capsys, *cli, "search", "--text", "zurich.jpg")["results"]) == []  # ü is not u
    assert names(cli_json(capsys, *cli, "search", "--text", "ZÜRICH")["results"]) == ["Zürich.jpg"]
    # Both bounds inclusive; a date-only --before takes the whole day (23:30 included).
    out = cli_json(capsys, *cli, "search", "--after", "2024-05-02", "--before", "2024-05-02")
    assert names(out["results"]) == ["Zürich.jpg"]
    out = cli_json(capsys, *cli, "search", "--after", "2024-05-01T10:00", "--before", "2024-05-03T08:00")
    assert names(out["results"]) == ["city.jpg", "Zürich.jpg", "beach.jpg"]
    assert names(cli_json(capsys, *cli, "search", "--camera", "nikon")["results"]) == ["Zürich.jpg"]
    assert names(cli_json(capsys, *cli, "search", "--text", "iphone")["results"]) == ["city.jpg"]
    assert names(cli_json(capsys, *cli, "search", "-k", "1", "--text", "")["results"]) == ["city.jpg"]
    assert main([*cli, "search", "--after", "yesterday"]) == 1
    assert "ISO 8601" in capsys.readouterr().err


def test_words_and_dates_filter_inside_the_knn(setup, capsys):
    engine, cli, folder = setup
    beach = engine.resolve(str(folder / "beach.jpg"))
    engine.change_tags([beach.id, str(folder / "old.jpg")], ["holiday"], [])
    vector = engine.store.vector(beach.id)
    hits = engine.search_vector(vector, 10, SearchFilter(text="HOLIDAY"))
    assert names([{"name": h.record.name} for h in hits]) == ["beach.jpg", "old.jpg"]
    hits = engine.search_vector(vector, 10, SearchFilter(text="holiday"), PhotoFilter.parse(after="2024-01-01"))
    assert [h.record.id for h in hits] == [beach.id]
    hits = engine.search_vector(vector, 2, None, PhotoFilter.parse(camera="apple"))
    assert names([{"name": h.record.name} for h in hits]) == ["city.jpg"]
    hits = engine.search_vector(vector, 4, SearchFilter(text="photos"), PhotoFilter.parse(before="2024-05-02"))
    assert len(hits) == 3  # k hits whenever k pass: beach, Zürich, old
    out = cli_json(capsys, *cli, "similar", beach.id, "--text", "holiday", "-k", "5")
    assert names(out["results"]) == ["beach.jpg", "old.jpg"]
    assert out["results"][0]["tags"] == ["holiday"] and out["results"][0]["taken"] == "2024-05-01T10:00:00+02:00"
    assert out["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)


def test_api_tags_and_words_only_search(setup):
    from core.api import create_app

    engine, _, folder = setup
    client = create_app(engine, engine.settings).test_client()
    city = engine.resolve(str(folder / "city.jpg"))
    response = client.put(f"/api/images/{city.id}/tags", json={"tags": [" Sea ", "sea", "Sky"]})
    assert response.status_code == 200 and response.get_json() == {"id": city.id, "tags": ["Sea", "Sky"]}
    assert client.get(f"/api/images/{city.id}/tags").get_json()["tags"] == ["Sea", "Sky"]
    assert client.put(f"/api/images/{city.id}/tags", json={"tags": ["a,b"]}).status_code == 400
    assert client.put(f"/api/images/{city.id}/tags", json={"tags": "Sea"}).status_code == 400
    assert client.get("/api/images/nope/tags").status_code == 404
    assert client.get("/api/tags").get_json() == {"tags": [{"tag": "Sea", "count": 1}, {"tag": "Sky", "count": 1}]}

    body = client.post("/api/search", json={"text": "SKY"}).get_json()
    assert body["query"] is None and body["text"] == "SKY"
    assert [r["id"] for r in body["results"]] == [city.id]
    assert body["results"][0]["score"] is None and body["results"][0]["tags"] == ["Sea", "Sky"]
    assert body["results"][0]["camera"] == "Apple iPhone 12" and "thumbnail_url" in body["results"][0]
    body = client.post("/api/search", json={"after": "2024-05-02", "before": "2024-05-02"}).get_json()
    assert names(body["results"]) == ["Zürich.jpg"]
    assert names(client.post("/api/search?camera=canon").get_json()["results"]) == ["beach.jpg"]
    assert client.post("/api/search", json={"after": "not a date"}).status_code == 400
    assert client.post("/api/search", json={"k": 2}).status_code == 400  # neither an image nor words

    image = (folder / "city.jpg").read_bytes()
    body = client.post("/api/search?text=sky&k=5", data=image, content_type="image/jpeg").get_json()
    assert [r["id"] for r in body["results"]] == [city.id] and body["results"][0]["tags"] == ["Sea", "Sky"]
    body = client.get(f"/api/images/{city.id}/similar?after=2024-05-02&k=5").get_json()
    assert sorted(names(body["results"])) == ["Zürich.jpg", "city.jpg"]
    assert all("taken" in r for r in body["results"])


def test_labels_are_searched_by_words_and_shown_apart_from_tags(setup, capsys):
    from core.api import create_app

    engine, cli, folder = setup
    city = engine.resolve(str(folder / "city.jpg"))
    engine.set_tags(city.id, ["Sky"])
    engine.annotations().set_labels({city.id: ["streetcar, tram"]})
    out = cli_json(capsys, *cli, "search", "--text", "TRAM")
    assert names(out["results"]) == ["city.jpg"]
    assert out["results"][0]["labels"] == ["streetcar, tram"] and out["results"][0]["tags"] == ["Sky"]
    out = cli_json(capsys, *cli, "similar", city.id, "-k", "4")
    assert {r["name"]: r["labels"] for r in out["results"]}["city.jpg"] == ["streetcar, tram"]
    assert all(r["labels"] == [] for r in out["results"] if r["name"] != "city.jpg")
    client = create_app(engine, engine.settings).test_client()
    body = client.post("/api/search", json={"text": "streetcar"}).get_json()
    assert [(r["id"], r["labels"], r["tags"]) for r in body["results"]] == [(city.id, ["streetcar, tram"], ["Sky"])]
    body = client.get(f"/api/images/{city.id}/similar?k=4").get_json()
    assert sorted(len(r["labels"]) for r in body["results"]) == [0, 0, 0, 1]


def test_web_page_words_box_searches_without_an_image(request):
    """In a real headless Chromium: words alone list matching images; with an image they filter it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.test_web_page import WAIT_S, card_ids

    web, chromium = request.getfixturevalue("server"), request.getfixturevalue("browser")
    engine = web.engine
    coffee = engine.resolve(str(web.photos / "coffee.jpg")).id
    moon = engine.resolve(str(web.photos / "moon.jpg")).id
    engine.set_tags(coffee, ["Morning"])
    engine.set_tags(moon, ["morning sky"])
    chromium.get(web.url + "/")
    box = chromium.find_element(By.ID, "words")
    box.send_keys("MORNING", Keys.ENTER)
    WebDriverWait(chromium, WAIT_S).until(lambda d: sorted(card_ids(d)) == sorted([coffee, moon]))
    assert "newest first" in chromium.find_element(By.ID, "summary").text
    box.clear()
    box.send_keys("sky", Keys.ENTER)
    WebDriverWait(chromium, WAIT_S).until(lambda d: card_ids(d) == [moon])
    # Click it: an image search from it, still filtered by the words.
    chromium.find_element(By.CSS_SELECTOR, f'#results .card[data-id="{moon}"] .card-hit').click()
    WebDriverWait(chromium, WAIT_S).until(lambda d: "similar to" in d.find_element(By.ID, "summary").text)
    assert card_ids(chromium) == [moon]
