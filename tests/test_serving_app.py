"""`petalnet serve` (serving/app.py, client.py): the API, its limits, a load test, and the web page in a
real browser."""

import json
import random
import shutil
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import SMALL_MODEL, cli
from imagegen import bomb_png, truncated_jpeg
from petalnet.serving.client import get_json as get
from petalnet.serving.client import post_photos
from server_process import ServerProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def server(trained_run):
    running = ServerProcess(trained_run, "--max-upload-mb", "2", "--device", "cpu")
    yield running
    stderr = running.stop()
    assert "Traceback" not in stderr, stderr


@pytest.fixture(scope="module")
def photos(made_photos):
    return sorted(made_photos.rglob("*.jpg"))[::8]


def test_health_model_and_openapi(server, trained_run):
    assert get(server.url + "/health")[1]["status"] == "ok"
    status, info = get(server.url + "/model")
    assert status == 200 and info["classes"] == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert info["model"] == SMALL_MODEL and info["input_size"] == 64
    assert info["training"]["recipe"] == "seed" and info["training"]["pipeline"] == "cache"
    assert info["training"]["val_acc"] is not None and info["eval_resize"] == "squash" and info["mean"] == [0.5] * 3
    assert "/predict" in get(server.url + "/openapi.json")[1]["paths"]


def test_predict_returns_the_records_of_predict_json(server, trained_run, photos, capsys):
    status, body = post_photos(server.url, [(photos[0].name, photos[0].read_bytes())])
    assert status == 200
    assert cli("predict", trained_run, photos[0], "--json", "--device", "cpu") == 0
    expected = json.loads(capsys.readouterr().out)
    assert body["predictions"] == [{**expected, "path": photos[0].name, "unsure": False}]  # no min_prob: False


def test_bad_uploads_get_4xx_with_one_line(server, photos):
    cases = [("notes.jpg", b"plain text, not a photo", 400, "not an image"),
             ("bomb.png", bomb_png(), 400, "decompression bomb"),
             ("half.jpg", truncated_jpeg(), 400, "truncated"),
             ("huge.jpg", b"\xff" * 2_500_000, 413, "limit")]
    for name, data, code, says in cases:
        status, body = post_photos(server.url, [(name, data)])
        assert status == code and says in body["detail"] and "\n" not in body["detail"], (name, status, body)
    status, body = post_photos(server.url, [(photos[1].name, photos[1].read_bytes()),
                                                        ("notes.jpg", b"text")])
    assert status == 200 and "top" in body["predictions"][0] and "error" in body["predictions"][1]


def test_heat_map_comes_with_explain(server, photos):
    status, body = post_photos(server.url, [(photos[2].name, photos[2].read_bytes())], explain=True)
    assert status == 200 and body["predictions"][0]["heatmap"].startswith("data:image/png;base64,")


def post_with(url, photo, query="", fields=()):
    """POST one photo to /predict with extra query text and form fields: (status, parsed JSON body)."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{photo.name}"\r\n'
             f"Content-Type: image/jpeg\r\n\r\n".encode() + photo.read_bytes() + b"\r\n"]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
              for name, value in fields]
    request = urllib.request.Request(f"{url}/predict?{query}", data=b"".join(parts) + f"--{boundary}--\r\n".encode(),
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_min_prob_marks_a_record_unsure_from_the_query_or_the_form(server, photos):
    status, body = post_with(server.url, photos[4])
    record = body["predictions"][0]
    prob = record["top"][0]["prob"]
    assert status == 200 and record["unsure"] is False and 0 < prob < 1
    above, below = min(1.0, prob + 1e-3), max(0.0, prob - 1e-3)
    cases = [(f"min_prob={above!r}", (), True), (f"min_prob={below!r}", (), False),
             (f"min_prob={prob!r}", (), False),  # below means below: equal is sure
             ("min_prob=1", (), True), ("min_prob=0", (), False), ("topk=1", [("min_prob", repr(above))], True),
             ("topk=2", [("min_prob", repr(below))], False), ("min_prob=1", [("min_prob", "1.0")], True),
             ("", [("min_prob", "")], False)]  # an empty form box: not given
    for query, fields, unsure in cases:
        status, body = post_with(server.url, photos[4], query, fields)
        assert status == 200, (query, fields, body)
        got = body["predictions"][0]
        assert got["unsure"] is unsure and got["top"][0] == record["top"][0], (query, fields, got)
        assert set(got) == {"path", "top", "unsure"}


def test_a_bad_min_prob_gets_422_with_one_line(server, photos):
    cases = [("min_prob=abc", ()), ("min_prob=1.5", ()), ("min_prob=-0.1", ()), ("min_prob=nan", ()),
             ("min_prob=inf", ()), ("", [("min_prob", "2")]), ("min_prob=0.2", [("min_prob", "0.3")])]
    for query, fields in cases:
        status, body = post_with(server.url, photos[4], query, fields)
        assert status == 422 and isinstance(body["detail"], str), (query, fields, body)
        assert "min_prob" in body["detail"] and "\n" not in body["detail"], (query, fields, body)


def test_the_page_carries_the_calibration_caveat(server):
    with urllib.request.urlopen(server.url + "/", timeout=60) as response:
        page = response.read().decode("utf-8")
    assert "The model is unsure: its top answer has probability ${prob.toFixed(2)}; " in page
    assert "a photo unlike its training photos can still get a confident answer, so check it yourself." in page
    assert 'id="minprob"' in page and 'body.append("min_prob"' in page and "record.unsure" in page


def test_load_200_requests_from_20_clients_mixing_good_broken_and_oversized(server, photos):
    rng = random.Random(7)
    kinds = [rng.choice(["good"] * 6 + ["broken", "oversized"]) for _ in range(200)]

    def request(kind):
        if kind == "good":
            photo = rng.choice(photos)
            return kind, photo.name, post_photos(server.url, [(photo.name, photo.read_bytes())])
        if kind == "broken":
            return kind, "b.jpg", post_photos(server.url, [("b.jpg", truncated_jpeg())])
        return kind, "o.jpg", post_photos(server.url, [("o.jpg", b"\x00" * 2_100_000)])

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(request, kinds))
    for kind, name, (status, body) in answers:
        assert status < 500, body
        if kind == "good":
            assert status == 200 and body["predictions"][0]["path"] == name and body["predictions"][0]["top"]
        else:
            assert status == (400 if kind == "broken" else 413)
    assert get(server.url + "/health")[0] == 200


def test_bad_model_or_flags_fail_before_serving_in_one_line(trained_run, tmp_path, capsys):
    assert cli("serve", tmp_path / "nothing", "--port", "1") == 2  # in a child process: test_cli_robustness
    err = capsys.readouterr().err
    assert "no such checkpoint" in err and err.count("\n") == 1, err
    for flags, says in ((["--port", "0"], "--port must be in [1, 65535], got 0"),
                        (["--workers", "0"], "--workers must be at least 1, got 0"),
                        (["--max-upload-mb", "0"], "--max-upload-mb must be greater than 0")):
        assert cli("serve", trained_run, *flags) == 2
        assert says in capsys.readouterr().err


@pytest.mark.slow  # a browser starts
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium; .ci/run installs it)")
def test_web_page_in_a_real_browser(server, photos, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.goto(server.url + "/")
            page.wait_for_function("document.getElementById('about').textContent.includes('daisy')")
            page.set_input_files("#picker", str(photos[3]))
            page.wait_for_selector(".card .bars .bar", timeout=30_000)
            shown = page.inner_text(".card .label")
            bars = page.locator(".card .bars .bar").count()
            heat = page.get_attribute(".card .pics figure:nth-child(2) img", "src")
            top_bar = page.locator(".card .bars .bar .fill").first.bounding_box()
            track = page.locator(".card .bars .bar .track").first.bounding_box()
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    status, body = post_photos(server.url, [(photos[3].name, photos[3].read_bytes())], topk=5)
    assert shown == body["predictions"][0]["top"][0]["class"]
    assert bars == 5 and heat.startswith("data:image/png;base64,")
    prob = body["predictions"][0]["top"][0]["prob"]
    assert top_bar["width"] == pytest.approx(prob * track["width"], abs=2)  # the bar shows the probability
    assert (tmp_path / "page.png").stat().st_size > 10_000
    assert Path(tmp_path / "page.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # a browser starts
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium; .ci/run installs it)")
def test_web_page_shows_the_caveat_when_the_top_probability_is_below_its_threshold(server, photos):
    sync_api = pytest.importorskip("playwright.sync_api")
    status, body = post_photos(server.url, [(photos[5].name, photos[5].read_bytes())], topk=5)
    prob = body["predictions"][0]["top"][0]["prob"]
    assert status == 200 and prob < 1
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            notes = []
            for threshold in ("1", "0"):  # everything below 1 is unsure; nothing is below 0
                page.fill("#minprob", threshold)
                page.set_input_files("#picker", str(photos[5]))
                page.wait_for_function(f"document.querySelectorAll('.card .bars .bar').length === "
                                       f"{5 * (len(notes) + 1)}", timeout=30_000)
                notes.append(page.locator(".card").first.locator(".caveat").all_inner_texts())
        finally:
            browser.close()
    assert notes[0] == [f"The model is unsure: its top answer has probability {prob:.2f}; a photo unlike its "
                        "training photos can still get a confident answer, so check it yourself."]
    assert notes[1] == []
