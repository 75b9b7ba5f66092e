"""`petalnet serve` in a child process on a free port, for the tests and benchmarks/bench_serve.py."""

import os
import socket
import subprocess
import sys
import time

from petalnet.serving.client import get_json


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
