"""The FastAPI app of `petalnet serve` (serving/server.py runs it): a trained model behind an HTTP API,
with a web page at /.

    curl -H "Authorization: Bearer $(cat token)" -F file=@rose.jpg https://HOST:8000/predict
    # {"predictions": [{"path": "rose.jpg", "top": [{"class": "roses", "prob": 0.91}, ...], "unsure": false}]}
    # a multi-label model: {"predictions": [{"path": "bed.jpg", "labels": ["roses", "tulips"],
    #                                        "probs": {"daisy": 0.02, ..., "tulips": 0.71}}]}

Endpoints (OpenAPI description at /docs and /openapi.json); with a token, all but / and /health need it:
    GET  /            the web page: drop photos, see the top classes as bars and where the model looked
    GET  /health      {"status": "ok"} (open: for load balancers)
    GET  /model       classes, model name, input size, transform, how it scored in training (a multi-label
                      model: "task": "multilabel" and its "thresholds", one per class)
    POST /predict     multipart field(s) `file`; ?topk=3&explain=false&min_prob=0.5 -> the records of
                      predict --json, each with "unsure": top probability below min_prob (a query or
                      form field in [0, 1]; false without it) (+ "heatmap": a PNG data URL with explain=true);
                      a multi-label model's records: its label set and every class's probability, no
                      "unsure" (topk does not apply, min_prob is refused with 422: its thresholds decide;
                      the heat map is the most probable class's)
    GET  /metrics     Prometheus text format (serving/metrics.py)
    POST /reload      load the checkpoint again (a new best.pt of the run); SIGHUP does the same

Limits (serving/guards.py): a body over --max-upload-mb gets 413, a request past --request-timeout 408/503,
past --max-pending requests in progress 429; a file that is not an image, or has more pixels than
Pillow's limit (a decompression bomb), gets 400 with a one-line reason; with several files, the readable
ones get records and the others error records (400 only if none is readable). Photos of concurrent
requests are classified together (serving/batcher.py).
"""

import asyncio
import base64
import io
import time
from importlib import resources

from petalnet.inference.sorting import is_unsure
from petalnet.errors import UserError
from petalnet.serving.guards import Admit, Authorize, Deadline, Observe, UploadLimit
from petalnet.serving.metrics import Metrics
from petalnet.serving.served import ReloadRefused, ServedModel
from petalnet.serving.settings import ServeSettings



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


def create_app(model_path, settings=None, token=None):
    """The FastAPI app for one model (loaded now: a bad checkpoint fails before the server starts), behind
    the guards of serving/guards.py; `token` None: no authentication."""
    try:
        from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
        from fastapi.concurrency import run_in_threadpool
        from fastapi.responses import HTMLResponse, Response
    except ImportError:
        raise UserError("petalnet serve needs FastAPI and uvicorn: pip install 'petalnet[serve]'") from None

    import petalnet

    settings = settings or ServeSettings()
    metrics = Metrics()
    served = ServedModel(model_path, settings.device, metrics)
    app = FastAPI(title="petalnet", version=petalnet.__version__, lifespan=reload_on_sighup(served),
                  description=f"Classify photos into {', '.join(served.current.info['classes'])}.")
    page = resources.files("petalnet.serving").joinpath("web/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def web_page():
        return page

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": served.current.info["model"], "time": time.time()}

    @app.get("/model")
    async def model():
        return served.current.info

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics():
        return Response(metrics.text(), media_type=metrics.content_type)

    @app.post("/reload")
    async def reload():
        if settings.workers > 1:
            raise HTTPException(409, f"with --workers {settings.workers} each process has its own model: send "
                                     f"SIGHUP to the main process, which restarts them one by one")
        try:
            return {"status": "reloaded", "model": await served.reload()}
        except ReloadRefused as err:
            raise HTTPException(err.status, err.detail) from None

    @app.post("/predict")
    async def predict(file: list[UploadFile] = File(...), topk: int = Query(3, ge=1),  # noqa: B008 - FastAPI style
                      explain: bool = False, min_prob: str | None = Query(None),
                      min_prob_field: str | None = Form(None, alias="min_prob")):
        try:
            threshold = parse_min_prob(min_prob, min_prob_field)
        except ValueError as err:
            raise HTTPException(422, str(err)) from None
        if threshold is not None and served.current.classifier.multilabel:
            raise HTTPException(422, "min_prob is for single-label models: this model is multi-label (its "
                                     "per-class thresholds, in GET /model, decide its labels)")
        records = []
        for upload in file:
            records.append(await _classify_upload(upload, topk, explain, threshold))
        if all("error" in record for record in records):
            raise HTTPException(400, "; ".join(f"{r['path']}: {r['error']}" for r in records))
        return {"predictions": records}

    async def _classify_upload(upload, topk, explain, min_prob):
        name, explain = upload.filename or "upload", explain and served.current.info["explain"]
        photo = await run_in_threadpool(served.current.classifier.decode, io.BytesIO(await upload.read()),
                                        thumbnail=explain)  # the photo under the heat map
        if photo.error is not None:
            return {"path": name, "error": photo.error}
        outcome, heat = await served.batcher.classify(photo.prepared, explain)
        record = {"path": name, **outcome}
        if "top" in record:  # a single-label model's: its k most probable classes (multi-label: every class)
            record["top"] = record["top"][:topk]
            record["unsure"] = is_unsure(record, min_prob)
        if explain:
            record["heatmap"] = await run_in_threadpool(heatmap_url, photo.thumbnail, heat)
        return record

    return guarded(app, settings, token, metrics)


def guarded(app, settings, token, metrics):
    """The app inside its guards, outermost first: log, time limit, token, bound on pending work, upload size."""
    max_bytes = int(settings.max_upload_mb * 1_000_000)
    app.add_middleware(UploadLimit, max_bytes=max_bytes)  # added last = outermost: added innermost first
    app.add_middleware(Admit, limit=settings.max_pending, metrics=metrics, max_bytes=max_bytes)
    if token is not None:
        app.add_middleware(Authorize, token=token, max_bytes=max_bytes)
    app.add_middleware(Deadline, seconds=settings.request_timeout, metrics=metrics)
    app.add_middleware(Observe, metrics=metrics, log_format=settings.log_format)
    return app


def reload_on_sighup(served):
    """The app's lifespan: SIGHUP reloads the model (where this process may set a signal handler)."""
    import contextlib
    import signal
    import sys

    async def reload_and_say():
        try:
            info = await served.reload()
            print(f"petalnet: reloaded {served.model_path} (epoch {info['training']['best_epoch']}, val "
                  f"{info['training']['val_acc']})", file=sys.stderr, flush=True)
        except ReloadRefused as err:
            print(f"petalnet: reload refused: {err.detail}", file=sys.stderr, flush=True)

    running = set()  # a reference to each reload's task until it ends (the loop keeps only a weak one)

    def start_reload():
        task = asyncio.get_running_loop().create_task(reload_and_say())
        running.add(task)
        task.add_done_callback(running.discard)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, start_reload)
        except (AttributeError, NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
            pass
        yield

    return lifespan
