"""`petalnet serve`: check the settings, load the model, run uvicorn (docs/serving.md).

    petalnet serve runs/seed                                    # http://127.0.0.1:8000/ (this machine only)
    petalnet serve runs/seed --host 0.0.0.0 --token-file ~/.petalnet-token --generate-token
    petalnet serve runs/seed --host 0.0.0.0 --token-file T --tls-cert cert.pem --tls-key key.pem   # https
    petalnet serve runs/seed --root-path /petalnet --token-file T     # behind a reverse proxy at /petalnet/
    kill -HUP PID                                               # serve the run's new best.pt

Everything a user can get wrong (a flag, the token file, the certificate, the checkpoint) fails here in
one line before the port is opened. With --workers N the processes get the model, the settings and the
token through the environment (readable by the same user only).
"""

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from petalnet.serving.app import create_app
from petalnet.serving.guards import ACCESS_LOG
from petalnet.serving.settings import ServeSettings, check_settings, is_loopback

ENV_MODEL, ENV_SETTINGS, ENV_TOKEN = "PETALNET_SERVE_MODEL", "PETALNET_SERVE_SETTINGS", "PETALNET_SERVE_TOKEN"


def run_server(model_path, settings=None):
    """Serve `model_path` until Ctrl-C / SIGTERM; returns the exit code (0)."""
    import uvicorn

    settings = settings or ServeSettings()
    token = check_settings(settings)
    app = create_app(model_path, settings, token)  # fails here, in one line, for a bad model
    scheme = "https" if settings.tls_cert else "http"
    who = "clients need the token" if token else "no token"
    print(f"serving {Path(model_path)} on {scheme}://{settings.host}:{settings.port}{settings.root_path}/ "
          f"({who}; API description: /docs)", flush=True)
    if token is None and not is_loopback(settings.host):
        print(f"petalnet: warning: --no-auth: anyone who can reach {settings.host}:{settings.port} can use this "
              f"server", file=sys.stderr, flush=True)
    log_access(settings.log_format)
    options = dict(host=settings.host, port=settings.port, ssl_certfile=settings.tls_cert,
                   ssl_keyfile=settings.tls_key, root_path=settings.root_path, proxy_headers=True,
                   forwarded_allow_ips=settings.forwarded_allow_ips, log_level="warning", access_log=False)
    if settings.workers == 1:
        uvicorn.run(app, **options)
        return 0
    kept = dataclasses.replace(settings, generate_token=False)  # written once, above
    os.environ.update({ENV_MODEL: str(model_path), ENV_SETTINGS: json.dumps(dataclasses.asdict(kept)),
                       ENV_TOKEN: token or ""})
    uvicorn.run("petalnet.serving.server:app_from_environment", factory=True, workers=settings.workers, **options)
    return 0


def app_from_environment():
    """For `uvicorn --factory` in each worker process: model, settings and token from run_server."""
    settings = ServeSettings(**json.loads(os.environ[ENV_SETTINGS]))
    log_access(settings.log_format)
    return create_app(os.environ[ENV_MODEL], settings, os.environ.get(ENV_TOKEN) or None)


def log_access(log_format):
    """Access-log lines (serving/guards.py) go to stderr, one per request, as they are."""
    if log_format == "off" or ACCESS_LOG.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ACCESS_LOG.addHandler(handler)
    ACCESS_LOG.setLevel(logging.INFO)
    ACCESS_LOG.propagate = False
