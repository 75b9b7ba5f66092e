"""The model a server is serving, and its reload (POST /reload, SIGHUP): the checkpoint is read again in a
thread while requests go on; it replaces the old model only when it loads and is the same model (classes,
network, input size and transform, single- or multi-label, which the clients and the photos already decoded
rely on; a multi-label model's thresholds may change). Otherwise
the old model keeps serving and the reload answers 409 (another model) or 422 (unreadable)."""

import asyncio
import time
from dataclasses import dataclass

from petalnet.config.run import TrainingSummary
from petalnet.errors import one_line
from petalnet.inference.classifier import classifier_from_checkpoint
from petalnet.inference.probabilities import thresholds_of
from petalnet.models.checkpoint import load_checkpoint
from petalnet.utils.fields import to_dict
from petalnet.serving.batcher import Batcher

SAME = ("classes", "model", "input_size", "eval_resize", "mean", "std", "task")  # what a reload may not change


@dataclass
class Loaded:
    classifier: object
    info: dict  # what GET /model returns
    seconds: float  # to load
    when: float  # Unix time


class ReloadRefused(Exception):
    def __init__(self, status, detail):
        super().__init__(detail)
        self.status, self.detail = status, detail


def load(model_path, device):
    """The checkpoint read once: its classifier and what GET /model says of it."""
    started = time.perf_counter()
    ckpt = load_checkpoint(model_path)
    classifier = classifier_from_checkpoint(ckpt, model_path, device)
    info = model_info(model_path, classifier.spec, TrainingSummary.of(ckpt))
    info["explain"] = explainable(classifier)
    return Loaded(classifier, info, time.perf_counter() - started, time.time())


def model_info(model_path, spec, training):
    """What GET /model returns: enough to call the API and to know how good the model is; a multi-label
    model's task and per-class thresholds besides (as its spec writes them)."""
    info = {"classes": list(spec.classes), "model": spec.model, "input_size": spec.image_size,
            "eval_resize": spec.eval_resize, "mean": list(spec.mean), "std": list(spec.std),
            "checkpoint": str(model_path), "training": to_dict(training)}
    if spec.multilabel:
        info.update(task=spec.task, thresholds=list(thresholds_of(spec)))
    return info


def explainable(classifier):
    """Whether the model can draw heat maps (a CNN checkpoint can; a transformer cannot)."""
    from petalnet.errors import UserError

    try:
        classifier.check_explain()
        return True
    except UserError:
        return False


class ServedModel:
    """The loaded model of one server process, and the batcher that runs it."""

    def __init__(self, model_path, device, metrics):
        self.model_path, self.device, self.metrics = model_path, device, metrics
        self.current = load(model_path, device)  # a bad checkpoint fails here, before the server starts
        self.batcher = Batcher(self.current.classifier, metrics)
        self.metrics.model_loaded(self.current.seconds, self.current.when)
        self.lock = asyncio.Lock()

    async def reload(self):
        """Load the checkpoint again and serve it from the next batch on; ReloadRefused when it cannot."""
        async with self.lock:  # one reload at a time
            try:
                new = await asyncio.get_running_loop().run_in_executor(None, load, self.model_path, self.device)
            except Exception as err:  # noqa: BLE001 - any failure leaves the old model serving
                self.metrics.reloads.labels("failed").inc()
                raise ReloadRefused(422, f"cannot load {self.model_path}: {one_line(err, 300)}; the old model "
                                         f"keeps serving") from None
            changed = [key for key in SAME if new.info.get(key) != self.current.info.get(key)]
            if changed:
                self.metrics.reloads.labels("failed").inc()
                raise ReloadRefused(409, f"{self.model_path} now holds another model ({', '.join(changed)} "
                                         f"differ): restart the server to serve it; the old model keeps serving")
            self.batcher.swap(new.classifier)
            self.current = new
            self.metrics.model_loaded(new.seconds, new.when)
            self.metrics.reloads.labels("ok").inc()
            return new.info
