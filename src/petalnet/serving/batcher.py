"""Photos of concurrent requests classified together: one model thread, batches of up to 32 photos
gathered for at most 5 ms. `swap` replaces the classifier between batches (a reload): a batch already
taken finishes on the model it started with. It uses the classifier's public interface only (outcomes,
explain: inference/classifier.py), so any model format, single- or multi-label, serves alike."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

MAX_BATCH, MAX_WAIT_S = 32, 0.005


class Batcher:
    """Collects photos from concurrent requests and classifies them together in one thread."""

    def __init__(self, classifier, metrics=None, max_batch=MAX_BATCH, max_wait=MAX_WAIT_S):
        self.classifier, self.metrics, self.max_batch, self.max_wait = classifier, metrics, max_batch, max_wait
        self.queue, self.worker = None, None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="petalnet-model")

    async def classify(self, prepared, explain):
        """(what its record says: {"top": every class, most probable first} or a multi-label model's {"labels",
        "probs"}; heat map or None) for one photo prepared by the classifier (Classifier.decode(...).prepared)."""
        if self.worker is None:
            self.queue = asyncio.Queue()
            self.worker = asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((prepared, explain, future))
        self._count_queue()
        return await future

    def swap(self, classifier):
        """Serve `classifier` from the next batch on; returns the one it replaces."""
        old, self.classifier = self.classifier, classifier
        return old

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
            self._count_queue()
            batch = [item for item in batch if not item[2].done()]  # its request gave up (time limit)
            if not batch:
                continue
            if self.metrics:
                self.metrics.batch_size.observe(len(batch))
            try:
                results = await loop.run_in_executor(self.executor, self._infer, self.classifier, batch)
                for (_, _, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)
            except Exception as err:  # noqa: BLE001 - fail these requests, keep serving
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(err)

    def _count_queue(self):
        if self.metrics:
            self.metrics.queue.set(self.queue.qsize())

    @staticmethod
    def _infer(classifier, batch):
        prepared = [photo for photo, _, _ in batch]
        outcomes = classifier.outcomes(prepared, len(classifier.classes))
        wanted = [k for k, (_, explain, _) in enumerate(batch) if explain]
        heats = dict(zip(wanted, classifier.explain([prepared[k] for k in wanted]))) if wanted else {}
        return [(outcomes[k], heats.get(k)) for k in range(len(batch))]
