"""`petalnet serve` in a child process on a free port, for the tests and benchmarks/bench_serve.py."""

import os
import socket
import subprocess
import sys
import tempfile
import time

from petalnet.serving.client import get_json


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`petalnet serve MODEL` in a child process on a free port; .url, .stderr() so far, .stop() returns
    its stderr. Its stderr goes to a file, not a pipe: a busy server's access log would fill a pipe nobody
    reads and block it. `scheme` https and `context` (an ssl.SSLContext trusting the test certificate)."""

    def __init__(self, model, *flags, env=None, scheme="http", context=None):
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self.process = subprocess.Popen([sys.executable, "-m", "petalnet", "serve", str(model), "--port",
                                         str(self.port), *map(str, flags)], stdout=subprocess.PIPE,
                                        stderr=self.log, text=True,
                                        env={**os.environ, "TQDM_DISABLE": "1", **(env or {})})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.stderr()}")
            try:
                if get_json(self.url + "/health", context=context)[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not answer /health within 60 s: {self.stop()}")

    def stderr(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        self.process.terminate()
        try:
            self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
        text = self.stderr()
        self.log.close()
        return text
