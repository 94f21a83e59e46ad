"""lamina serve: the JSON API of each application (answers equal learn.predict's), its 4xx errors, the OpenAPI
schema, request batching, a bounded load test on 127.0.0.1, and the page in a headless browser."""

import asyncio
import base64
import io
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from lamina.serve import Batcher, create_app

from . import tiny_apps

with warnings.catch_warnings():  # this starlette prefers httpx2 to httpx; both work
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("apps")
    clf, files = tiny_apps.image_classifier(folder)
    seg, seg_files = tiny_apps.segmenter(folder)
    tab, df = tiny_apps.tabular()
    col, _ = tiny_apps.collab()
    return {"clf": (clf, files), "seg": (seg, seg_files), "tab": (tab, df), "col": (col, None)}


def upload(path, name=None, field="file"):
    return {field: (name or path.name, path.read_bytes(), "image/jpeg")}


def test_image_classifier_answers_like_predict(apps):
    learn, files = apps["clf"]
    with TestClient(create_app(learn)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        for path in files[:3]:
            answer = client.post("/predict", files=upload(path))
            assert answer.status_code == 200, answer.text
            label, _, probs = learn.predict(path)
            body = answer.json()
            assert body["prediction"] == label
            assert body["probabilities"] == pytest.approx(dict(zip(["False", "True"], probs.tolist())), abs=1e-5)
            assert body["probability"] == pytest.approx(float(probs.max()), abs=1e-5)


def test_image_upload_errors_are_clear_4xx(apps, tmp_path):
    learn, files = apps["clf"]
    (tmp_path / "notes.txt").write_text("not an image")
    with TestClient(create_app(learn, max_upload_mb=0.002)) as client:
        wrong_type = client.post("/predict", files=upload(tmp_path / "notes.txt"))
        assert wrong_type.status_code == 415 and "'notes.txt' is not an image" in wrong_type.json()["detail"]
        wrong_field = client.post("/predict", files=upload(files[0], field="image"))
        assert wrong_field.status_code == 422
        assert wrong_field.json()["detail"].startswith("file: Field required (send the image as the multipart")
        assert client.post("/predict", json={"file": "x"}).status_code == 422
        too_big = client.post("/predict", files={"file": ("big.jpg", b"\xff" * 3000, "image/jpeg")})
        assert too_big.status_code == 413 and "at most 2000" in too_big.json()["detail"]


def test_segmentation_returns_the_mask_and_an_overlay(apps):
    learn, files = apps["seg"]
    with TestClient(create_app(learn)) as client:
        body = client.post("/predict", files=upload(files[0])).json()
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask_png"]))))
    _, want, _ = learn.predict(files[0])
    assert np.array_equal(mask, want.numpy())
    overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_png"])))
    assert overlay.size == (32, 32) and overlay.mode == "RGB"
    assert sum(body["pixel_share"].values()) == pytest.approx(1.0) and list(body["pixel_share"]) == tiny_apps.CODES


def test_tabular_row_as_json_with_its_columns_in_the_schema(apps):
    learn, df = apps["tab"]
    columns = ["workclass", "education", "age", "education-num"]
    rows = df[columns].iloc[:3]
    want = learn.predict_df(rows)
    with TestClient(create_app(learn)) as client:
        for i, row in enumerate(rows.astype(object).where(rows.notna(), None).to_dict("records")):
            body = client.post("/predict", json=row).json()
            assert body["prediction"] == want["salary_pred"].iloc[i]
            assert body["probability"] == pytest.approx(max(want.filter(like="salary_prob_").iloc[i]), abs=1e-5)
        schema = client.get("/openapi.json").json()["components"]["schemas"]["TabularRow"]
        assert sorted(schema["required"]) == sorted(columns)
        missing = client.post("/predict", json={"age": 40})
        assert missing.status_code == 422 and "workclass: Field required" in missing.json()["detail"]
        extra = client.post("/predict", json={**dict.fromkeys(columns), "salary": "x"})
        assert extra.status_code == 422 and "salary: Extra inputs are not permitted" in extra.json()["detail"]
        assert client.post("/predict", content=b"x" * 70_000).status_code == 413  # rows are small
        info = client.get("/info").json()
        assert [c["name"] for c in info["columns"]] == columns and "Private" in info["columns"][0]["values"]


def test_collab_pair_and_unknown_ids(apps):
    learn, _ = apps["col"]
    with TestClient(create_app(learn)) as client:
        body = client.post("/predict", json={"user": 1, "item": 101}).json()
        assert body["prediction"] == pytest.approx(learn.predict((1, 101))[0], abs=1e-5)
        unknown = client.post("/predict", json={"user": 999, "item": 101})
        assert unknown.status_code == 422 and "never seen in training: 999" in unknown.json()["detail"]
        wrong = client.post("/predict", json={"user": 1, "movie": 101})
        assert wrong.status_code == 422 and "item: Field required" in wrong.json()["detail"]
        assert client.get("/").text.startswith("<!doctype html>")


def test_concurrent_requests_share_batches_and_failures_stay_their_own():
    calls = []

    def predict(items):
        calls.append(list(items))
        return [ValueError(f"bad {i}") if i == 3 else i * 10 for i in items]

    async def main(batcher):
        return await asyncio.gather(*(batcher.submit(i) for i in range(10)), return_exceptions=True)

    results = asyncio.run(main(Batcher(predict, max_batch=4, max_wait_ms=50)))
    assert [len(c) for c in calls] == [4, 4, 2]
    assert results[:3] == [0, 10, 20] and isinstance(results[3], ValueError) and results[9] == 90
    calls.clear()
    asyncio.run(main(Batcher(predict, max_batch=1)))
    assert [len(c) for c in calls] == [1] * 10


def test_a_body_without_length_is_counted_and_stopped_at_the_limit():
    from lamina.serve import _BodyLimit
    called, sent = [], []

    async def app(scope, receive, send):
        called.append(await receive())

    async def send(message):
        sent.append(message)

    def receiver(chunks):
        messages = iter([{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                         for i, c in enumerate(chunks)])
        return lambda: asyncio.sleep(0, next(messages))

    scope = {"type": "http", "method": "POST", "headers": []}  # chunked: no content-length
    asyncio.run(_BodyLimit(app, limit=10)(scope, receiver([b"12345", b"67890", b"x"]), send))
    assert called == [] and sent[0]["status"] == 413
    asyncio.run(_BodyLimit(app, limit=10)(scope, receiver([b"12345", b"678"]), send))
    assert called == [{"type": "http.request", "body": b"12345678", "more_body": False}]


def test_bounded_load_on_loopback_has_no_errors(apps):
    """200 requests from 8 concurrent clients against real uvicorn (timings go to benchmarks/SERVE.md)."""
    from benchmarks.serve_load import load, running
    learn, files = apps["clf"]
    payload = files[0].read_bytes()
    app = create_app(learn)
    with running(app) as url:
        result = load(url, lambda http, u: http.post(f"{u}/predict", files={"file": ("p.jpg", payload, "image/jpeg")}),
                      n_requests=200, n_clients=8, timeout=120)
    assert result["errors"] == [] and len(result["latencies"]) == 200
    assert sum(app.state.batcher.batch_sizes) == 200


@pytest.mark.browser
def test_page_predicts_an_uploaded_image_in_a_browser(apps, tmp_path):
    """The page in headless Chromium: upload an image, press Predict, read the answer and the bars.

    Needs Selenium and Debian's chromium and chromium-driver (``apt-get install chromium chromium-driver``,
    ``pip install selenium``); skipped without them."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
    browser, driver_path = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (browser and driver_path):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from benchmarks.serve_load import running
    learn, files = apps["clf"]
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        options.add_argument(flag)
    with running(create_app(learn)) as url:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
        try:
            driver.get(url + "/")
            WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "file"))
            driver.find_element(By.ID, "file").send_keys(str(files[0]))
            driver.find_element(By.ID, "submit").click()
            WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "answer").text)
            label, _, _ = learn.predict(files[0])
            assert driver.find_element(By.ID, "answer").text.startswith(label)
            assert len(driver.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 2
            assert driver.find_element(By.ID, "error").text == ""
        finally:
            driver.quit()
