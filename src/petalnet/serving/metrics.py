"""What `GET /metrics` reports, in Prometheus' text format (prometheus_client, one registry per app).

    petalnet_requests_total{path,status}        requests answered, by endpoint and HTTP status
    petalnet_request_seconds{path}               time from the request's start to its last byte (histogram)
    petalnet_batch_size                          photos per model call (histogram)
    petalnet_queue_photos                        photos waiting for the model now
    petalnet_requests_pending                    /predict requests in progress or waiting (bounded by --max-pending)
    petalnet_requests_rejected_total{reason}     429s for a full server, 408/503s for the time limit
    petalnet_model_load_seconds                  how long the serving checkpoint took to load
    petalnet_model_loaded_timestamp_seconds      when it was loaded (a reload moves it)
    petalnet_reloads_total{result}               POST /reload and SIGHUP: ok / failed

With --workers N each process counts its own requests: a scrape reaches one of them.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

KNOWN_PATHS = ("/", "/health", "/model", "/predict", "/reload", "/metrics", "/docs", "/openapi.json")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """The server's counters, gauges and histograms (a registry of its own: tests start several apps)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("petalnet_requests", "Requests answered, by endpoint and HTTP status",
                                ["path", "status"], registry=registry)
        self.latency = Histogram("petalnet_request_seconds", "Seconds from a request's start to its last byte",
                                 ["path"], buckets=LATENCY_BUCKETS, registry=registry)
        self.batch_size = Histogram("petalnet_batch_size", "Photos per model call", buckets=BATCH_BUCKETS,
                                    registry=registry)
        self.queue = Gauge("petalnet_queue_photos", "Photos waiting for the model", registry=registry)
        self.pending = Gauge("petalnet_requests_pending", "/predict requests in progress or waiting",
                             registry=registry)
        self.rejected = Counter("petalnet_requests_rejected", "Requests turned away: server full or too slow",
                                ["reason"], registry=registry)
        self.load_seconds = Gauge("petalnet_model_load_seconds", "Seconds the serving checkpoint took to load",
                                  registry=registry)
        self.loaded_at = Gauge("petalnet_model_loaded_timestamp_seconds", "When the serving checkpoint was "
                               "loaded (Unix time)", registry=registry)
        self.reloads = Counter("petalnet_reloads", "Model reloads, by result", ["result"], registry=registry)

    def observe(self, path, status, seconds):
        path = path if path in KNOWN_PATHS else "other"  # bounded label values: no path made up by a client
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def model_loaded(self, seconds, when):
        self.load_seconds.set(seconds)
        self.loaded_at.set(when)

    def text(self):
        return generate_latest(self.registry)
