"""A client for `petalnet serve` with the standard library only (no requests, no torch).

    from petalnet.serving.client import post_photos
    status, body = post_photos("http://127.0.0.1:8000", [("rose.jpg", open("rose.jpg", "rb").read())])
    body["predictions"][0]["top"][0]         # {"class": "roses", "prob": 0.91}
    post_photos("https://host:8000", files, token=open("token").read().strip())   # a server with a token

`context`: an ssl.SSLContext for https with a certificate of your own (ssl.create_default_context(cafile=...)).
"""

import json
import urllib.error
import urllib.request
import uuid


def call(url, data=None, headers=None, token=None, timeout=60, context=None, method=None):
    """(status, headers, body bytes) of one request; HTTP errors are answers too."""
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def get_json(url, timeout=60, token=None, context=None):
    """(status, parsed JSON body) of a GET."""
    status, _, body = call(url, token=token, timeout=timeout, context=context)
    return status, json.loads(body or b"{}")


def post_photos(url, files, topk=3, explain=False, timeout=120, token=None, context=None):
    """POST [(filename, bytes)] to URL/predict as multipart `file` fields; (status, parsed JSON body)."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
             f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    query = f"/predict?topk={topk}" + ("&explain=true" if explain else "")
    status, _, answer = call(url.rstrip("/") + query, data=body, token=token, timeout=timeout, context=context,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}, method="POST")
    return status, json.loads(answer or b"{}")
