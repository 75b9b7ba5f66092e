"""A client for `petalnet serve` with the standard library only (no requests, no torch).

    from petalnet.serving.client import post_photos
    status, body = post_photos("http://127.0.0.1:8000", [("rose.jpg", open("rose.jpg", "rb").read())])
    body["predictions"][0]["top"][0]         # {"class": "roses", "prob": 0.91}
"""

import json
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
