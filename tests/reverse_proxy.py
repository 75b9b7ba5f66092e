"""A reverse proxy as nginx would be set up in front of `petalnet serve --root-path /petalnet`: requests to
/petalnet/X go to the server's /X with X-Forwarded-For (a made-up client) and X-Forwarded-Proto https."""

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CLIENT = "203.0.113.9"  # TEST-NET-3: an address no test machine has


class ReverseProxy:
    """.url (http://127.0.0.1:PORT/petalnet) in front of `backend`; .stop()."""

    def __init__(self, backend, prefix="/petalnet"):
        target = urlsplit(backend)

        class Handler(BaseHTTPRequestHandler):
            def forward(self):
                if not self.path.startswith(prefix + "/"):
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                headers.update({"X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https"})
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                connection.request(self.command, self.path[len(prefix):], body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "connection", "date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                connection.close()

            do_GET = do_POST = forward

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{prefix}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
