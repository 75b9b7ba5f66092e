"""A client for `petalnet serve` with the standard library only (no requests, no torch).

    from petalnet.client import post_photos
    status, body = post_photos("http://127.0.0.1:8000", [("rose.jpg", open("rose.jpg", "rb").read())])
    body["predictions"][0]["top"][0]         # {"class": "roses", "prob": 0.91}

    server = ServerProcess("runs/seed")      # `petalnet serve` in the background, on a free port
    post_photos(server.url, ...); server.stop()
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid


def get_json(url, timeout=60):
    """(status, parsed JSON body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def post_photos(url, files, topk=3, explain=False, timeout=120):
    """POST [(filename, bytes)] to URL/predict as multipart `file` fields; (status, parsed JSON body)."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
             f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    query = f"/predict?topk={topk}" + ("&explain=true" if explain else "")
    request = urllib.request.Request(url.rstrip("/") + query, data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`petalnet serve MODEL` in a child process on a free port; .url, .stop() returns its stderr."""

    def __init__(self, model, *flags):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "petalnet", "serve", str(model), "--port",
                                         str(self.port), *map(str, flags)], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.process.stderr.read()}")
            try:
                if get_json(self.url + "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("server did not answer /health within 60 s")

    def stop(self):
        self.process.terminate()
        try:
            _, stderr = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        return stderr
