"""A file server on 127.0.0.1 for download tests: HTTP Range support, and a connection that can be cut."""

import functools
import http.server
import os
import threading

import pytest


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support; `cut_after` bytes then drops the connection, once."""

    cut_after = None
    requests = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            return self.send_error(404)
        data = open(path, "rb").read()
        start = 0
        header = self.headers.get("Range")
        type(self).requests.append(header)
        if header and header.startswith("bytes="):
            start = int(header[6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_after is not None:
            body, type(self).cut_after = body[: type(self).cut_after], None
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (base_url, folder, handler class)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = type("Handler", (RangeHandler,), {"cut_after": None, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www, handler
    httpd.shutdown()
    httpd.server_close()
