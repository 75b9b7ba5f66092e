"""`petalnet serve`: a trained model behind an HTTP API (FastAPI + uvicorn), with a web page at /.

    petalnet serve runs/seed                       # http://127.0.0.1:8000/ (this machine only)
    petalnet serve runs/seed --host 0.0.0.0 --port 8080 --workers 2

    curl -F file=@rose.jpg http://127.0.0.1:8000/predict
    # {"predictions": [{"path": "rose.jpg", "top": [{"class": "roses", "prob": 0.91}, ...]}]}

Endpoints (OpenAPI description at /docs and /openapi.json):
    GET  /            the web page: drop photos, see the top classes as bars and where the model looked
    GET  /health      {"status": "ok"}
    GET  /model       classes, model name, input size, transform, how it scored in training
    POST /predict     multipart field(s) `file`; ?topk=3&explain=false&min_prob=0.5 -> the records of
                      predict --json, each with "unsure": top probability below min_prob (a query or
                      form field in [0, 1]; false without it) (+ "heatmap": a PNG data URL with explain=true)

Limits: a request body over --max-upload-mb (10 MB) gets 413; a file that is not an image, or has
more pixels than Pillow's limit (a decompression bomb), gets 400 with a one-line reason; with several
files, the readable ones get records and the others error records (400 only if none is readable).
Photos of concurrent requests are classified together in batches (up to 32, waiting at most 5 ms).
"""

import asyncio
import base64
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import torch

from petalnet.models.checkpoint import load_checkpoint
from petalnet.inference.classifier import load_classifier
from petalnet.inference.sorting import is_unsure
from petalnet.pipeline.preprocess import eval_tensor, open_eval_photo
from petalnet.errors import UserError
from petalnet.utils.fields import check_number
from petalnet.data.images import UnreadableImage, small_copy

MAX_BATCH, MAX_WAIT_S = 32, 0.005
VIEW_SIZE = 512  # longest side of the photo under a heat map


class Batcher:
    """Collects photos from concurrent requests and classifies them together in one thread."""

    def __init__(self, classifier, max_batch=MAX_BATCH, max_wait=MAX_WAIT_S):
        self.classifier, self.max_batch, self.max_wait = classifier, max_batch, max_wait
        self.queue, self.worker = None, None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="petalnet-model")

    async def classify(self, tensor, explain):
        """(probabilities of every class, sorted, as records; heat map or None) for one uint8 tensor."""
        if self.worker is None:
            self.queue = asyncio.Queue()
            self.worker = asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((tensor, explain, future))
        return await future

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            try:
                results = await loop.run_in_executor(self.executor, self._infer, batch)
                for (_, _, future), result in zip(batch, results):
                    future.set_result(result)
            except Exception as err:  # noqa: BLE001 - fail these requests, keep serving
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(err)

    def _infer(self, batch):
        images = torch.stack([tensor for tensor, _, _ in batch])
        top = self.classifier._top(images, len(self.classifier.classes))
        wanted = [k for k, (_, explain, _) in enumerate(batch) if explain]
        heats = dict(zip(wanted, self.classifier.explain(images[wanted]))) if wanted else {}
        return [(top[k], heats.get(k)) for k in range(len(batch))]


def model_info(model_path, classifier):
    """What GET /model returns: enough to call the API and to know how good the model is."""
    ckpt = load_checkpoint(model_path)
    config = ckpt.get("config", {})
    spec = classifier.spec
    return {"classes": classifier.classes, "model": spec.model, "input_size": spec.image_size,
            "eval_resize": spec.eval_resize, "mean": list(spec.mean), "std": list(spec.std),
            "checkpoint": str(model_path),
            "training": {"recipe": config.get("recipe"), "epochs": config.get("epochs"),
                         "pipeline": config.get("pipeline"), "best_epoch": ckpt.get("epoch"),
                         "val_acc": ckpt.get("val_acc")}}


def decode_upload(data, spec, keep_view):
    """Upload bytes -> (uint8 tensor for the model, small RGB view or None); UnreadableImage if not a photo."""
    image = open_eval_photo(io.BytesIO(data), spec.image_size, spec.eval_resize)
    return eval_tensor(image, spec.image_size, spec.eval_resize), small_copy(image, VIEW_SIZE) if keep_view else None


def parse_min_prob(*values):
    """min_prob from the query and/or the form (None when neither gives it); ValueError with one line when
    it is not a number in [0, 1] or the two disagree."""
    numbers = {_probability(value) for value in values if value is not None and value.strip()}
    if len(numbers) > 1:
        raise ValueError(f"min_prob given twice with different values: {', '.join(map(str, sorted(numbers)))}")
    return numbers.pop() if numbers else None


def _probability(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 1:  # NaN fails the comparison too
        raise ValueError(f"min_prob must be a number in [0, 1], got {text.strip()[:40]!r}")
    return value


def heatmap_url(view, heat):
    from petalnet.inference.explain import overlay_png

    return "data:image/png;base64," + base64.b64encode(overlay_png(view, heat)).decode("ascii")


class UploadLimit:
    """ASGI middleware: a POST body over max_bytes gets 413 (the body is drained first, so clients read it)."""

    def __init__(self, app, max_bytes):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _drain(receive, limit=int(declared))
            return await _json_response(send, 413, f"upload of {int(declared)} bytes is over the "
                                                   f"{self.max_bytes} byte limit")
        body, more = [], True
        while more:
            message = await receive()
            body.append(message.get("body", b""))
            more = message.get("more_body", False)
            if sum(map(len, body)) > self.max_bytes:
                await _drain(receive, limit=8 * self.max_bytes)
                return await _json_response(send, 413, f"upload over the {self.max_bytes} byte limit")
        whole = b"".join(body)

        async def replay():
            return {"type": "http.request", "body": whole, "more_body": False}

        return await self.app(scope, replay, send)


async def _drain(receive, limit):
    seen = 0
    while seen <= limit:
        message = await receive()
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _json_response(send, status, detail):
    import json

    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _explainable(classifier):
    from petalnet.inference.explain import last_conv

    try:
        last_conv(classifier.model)
        return True
    except UserError:
        return False


def create_app(model_path, device="auto", max_upload_mb=10.0):
    """The FastAPI app for one model (loaded now: a bad checkpoint fails before the server starts)."""
    try:
        from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
        from fastapi.concurrency import run_in_threadpool
        from fastapi.responses import HTMLResponse
    except ImportError:
        raise UserError("petalnet serve needs FastAPI and uvicorn: pip install 'petalnet[serve]'") from None

    import petalnet

    classifier = load_classifier(model_path, device)
    info, batcher = model_info(model_path, classifier), Batcher(classifier)
    info["explain"] = explainable = _explainable(classifier)
    app = FastAPI(title="petalnet", version=petalnet.__version__,
                  description=f"Classify photos into {', '.join(classifier.classes)}.")
    page = resources.files("petalnet.serving").joinpath("web/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def web_page():
        return page

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": info["model"], "time": time.time()}

    @app.get("/model")
    async def model():
        return info

    @app.post("/predict")
    async def predict(file: list[UploadFile] = File(...), topk: int = Query(3, ge=1),  # noqa: B008 - FastAPI style
                      explain: bool = False, min_prob: str | None = Query(None),
                      min_prob_field: str | None = Form(None, alias="min_prob")):
        try:
            threshold = parse_min_prob(min_prob, min_prob_field)
        except ValueError as err:
            raise HTTPException(422, str(err)) from None
        records = []
        for upload in file:
            records.append(await _classify_upload(upload, topk, explain, threshold))
        if all("error" in record for record in records):
            raise HTTPException(400, "; ".join(f"{r['path']}: {r['error']}" for r in records))
        return {"predictions": records}

    async def _classify_upload(upload, topk, explain, min_prob):
        name, explain = upload.filename or "upload", explain and explainable  # no heat map from a transformer
        try:
            tensor, view = await run_in_threadpool(decode_upload, await upload.read(), classifier.spec, explain)
        except UnreadableImage as err:
            return {"path": name, "error": str(err)}
        top, heat = await batcher.classify(tensor, explain)
        record = {"path": name, "top": top[:topk]}
        record["unsure"] = is_unsure(record, min_prob)
        if explain:
            record["heatmap"] = await run_in_threadpool(heatmap_url, view, heat)
        return record

    app.add_middleware(UploadLimit, max_bytes=int(max_upload_mb * 1_000_000))
    return app


def app_from_environment():
    """For `uvicorn --factory` with several worker processes: the model comes from the environment."""
    return create_app(os.environ["PETALNET_SERVE_MODEL"], os.environ.get("PETALNET_SERVE_DEVICE", "auto"),
                      float(os.environ.get("PETALNET_SERVE_MAX_UPLOAD_MB", "10")))


def run_server(model_path, host="127.0.0.1", port=8000, workers=1, device="auto", max_upload_mb=10.0):
    import uvicorn

    check_number("workers", workers, at_least=1)
    check_number("port", port, at_least=1, at_most=65535)
    check_number("max_upload_mb", max_upload_mb, above=0)
    app = create_app(model_path, device, max_upload_mb)  # fails here, in one line, for a bad model
    print(f"serving {Path(model_path)} on http://{host}:{port}/  (API description: /docs)", flush=True)
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    else:
        os.environ.update(PETALNET_SERVE_MODEL=str(model_path), PETALNET_SERVE_DEVICE=device,
                          PETALNET_SERVE_MAX_UPLOAD_MB=str(max_upload_mb))
        uvicorn.run("petalnet.serving.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
                    log_level="warning")
    return 0
