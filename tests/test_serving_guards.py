"""`petalnet serve` beyond localhost (serving/settings.py, guards.py, metrics.py, served.py): the token,
TLS, a reverse proxy's prefix, the bound on pending work, the time limit, /metrics, the access log and
reloading the model under load. One server (token, small bounds, JSON log, a copy of the run it may
change) serves most tests; the refusals at start-up need none."""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from conftest import cli, linked_copy
from petalnet.serving.client import call, get_json, post_photos
from reverse_proxy import CLIENT, ReverseProxy
from server_process import ServerProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PENDING, TIMEOUT = 3, 6.0
ENDPOINTS = [("GET", "/model"), ("POST", "/predict"), ("GET", "/metrics"), ("POST", "/reload"), ("GET", "/docs"),
             ("GET", "/openapi.json")]


@pytest.fixture(scope="module")
def run_copy(trained_run, tmp_path_factory):
    """A copy of the trained run whose best.pt the reload tests replace (and put back): its checkpoints are
    hard links, so each change is a new file renamed over best.pt (`replace`), as `train` writes them."""
    return linked_copy(trained_run, tmp_path_factory.mktemp("served") / "run")


def replace(path, content):
    """Put `content` (bytes, or a dict for torch.save) at `path` by renaming a new file over it."""
    new = path.with_name(path.name + ".new")
    if isinstance(content, bytes):
        new.write_bytes(content)
    else:
        torch.save(content, new)
    os.replace(new, path)


@pytest.fixture(scope="module")
def guarded(run_copy, tmp_path_factory):
    """The server: a token it wrote itself, --max-pending 3, --request-timeout 6, a JSON access log, the
    prefix /petalnet; .token added."""
    token_file = tmp_path_factory.mktemp("secret") / "token"
    server = ServerProcess(run_copy, "--token-file", token_file, "--generate-token", "--max-pending", PENDING,
                           "--request-timeout", TIMEOUT, "--log-format", "json", "--root-path", "/petalnet",
                           "--device", "cpu")
    server.token, server.token_file = token_file.read_text().strip(), token_file
    yield server
    stderr = server.stop()
    assert "Traceback" not in stderr and server.token not in stderr, stderr


@pytest.fixture(scope="module")
def photo(made_photos):
    path = sorted(made_photos.rglob("*.jpg"))[0]
    return path.name, path.read_bytes()


def request(server, method, path, token=None, data=None):
    headers = {"Content-Type": "multipart/form-data; boundary=x"} if method == "POST" else {}
    data = data if data is not None else (b"--x--\r\n" if method == "POST" else None)
    return call(server.url + path, data=data, headers=headers, token=token, method=method)


def test_generated_token_file_is_the_owners_alone(guarded):
    mode = stat.S_IMODE(guarded.token_file.stat().st_mode)
    assert mode == 0o600 and len(guarded.token) >= 40, (oct(mode), guarded.token)


def test_every_endpoint_with_no_wrong_and_right_token(guarded, photo):
    for method, path in ENDPOINTS:
        for token in (None, "wrong-token-of-many-characters", guarded.token[:-1], guarded.token + "x"):
            status, headers, body = request(guarded, method, path, token)
            assert status == 401 and headers["WWW-Authenticate"] == "Bearer", (path, token, status)
            detail = json.loads(body)["detail"]
            assert detail == "this server needs its token: send 'Authorization: Bearer TOKEN'", detail
        status, _, body = request(guarded, method, path, guarded.token)
        assert status != 401, (path, status, body)
    assert call(guarded.url + "/health")[0] == 200 and call(guarded.url + "/")[0] == 200  # open
    status, body = post_photos(guarded.url, [photo], token=guarded.token)
    assert status == 200 and body["predictions"][0]["top"], body
    assert get_json(guarded.url + "/model", token=guarded.token)[1]["classes"][0] == "daisy"


def test_a_full_server_answers_429_at_once_and_a_trickling_upload_is_cut_off(guarded, photo):
    """PENDING uploads that send a byte every 0.25 s fill the server; the next /predict gets 429 +
    Retry-After at once while /health answers; the trickles get 408 after the time limit; then it serves."""
    started = time.monotonic()
    trickles = [Trickle(guarded, token=guarded.token) for _ in range(PENDING)]
    try:
        wait_for(lambda: gauge(guarded, "petalnet_requests_pending") == PENDING, seconds=TIMEOUT - 1)
        asked = time.monotonic()
        status, headers, body = call(guarded.url + "/predict", data=b"--x--\r\n", token=guarded.token,
                                     headers={"Content-Type": "multipart/form-data; boundary=x"}, method="POST")
        assert status == 429 and headers["Retry-After"] == "1" and "busy" in json.loads(body)["detail"], body
        assert time.monotonic() - asked < 1.0
        assert get_json(guarded.url + "/health")[0] == 200
        answers = [trickle.answer() for trickle in trickles]
    finally:
        for trickle in trickles:
            trickle.close()
    waited = time.monotonic() - started
    assert all(answer.startswith("HTTP/1.1 408") for answer in answers), answers
    assert f"did not arrive within {TIMEOUT:g} s" in answers[0], answers[0]
    assert TIMEOUT <= waited < TIMEOUT + 3, waited
    assert post_photos(guarded.url, [photo], token=guarded.token)[0] == 200
    text = metrics_text(guarded)
    assert 'petalnet_requests_rejected_total{reason="full"} 1.0' in text
    assert f'petalnet_requests_rejected_total{{reason="upload_timeout"}} {PENDING}.0' in text


def test_metrics_count_requests_batches_and_the_model_load(guarded, photo):
    before = counter(guarded, 'petalnet_requests_total{path="/predict",status="200"}')
    for _ in range(3):
        assert post_photos(guarded.url, [photo], token=guarded.token)[0] == 200
    predicted = 'petalnet_requests_total{path="/predict",status="200"}'
    wait_for(lambda: counter(guarded, predicted) >= before + 3, 10)  # counted after the answer's last byte
    text = metrics_text(guarded)
    assert counter(guarded, predicted, text) == before + 3
    assert counter(guarded, 'petalnet_request_seconds_count{path="/predict"}', text) >= before + 3
    assert counter(guarded, "petalnet_batch_size_count", text) >= 3
    assert 'petalnet_request_seconds_bucket{le="+Inf",path="/predict"}' in text
    assert 0 < counter(guarded, "petalnet_model_load_seconds", text) < 60
    assert counter(guarded, "petalnet_queue_photos", text) == 0
    assert 'petalnet_requests_total{path="/health",status="200"}' in text


def test_access_log_has_one_json_line_per_request_and_no_secret(guarded, photo):
    marker = f"/model?marker={time.time_ns()}"
    assert call(guarded.url + marker, token=guarded.token)[0] == 200
    assert post_photos(guarded.url, [photo], token=guarded.token)[0] == 200
    wait_for(lambda: json_records(guarded)[-1]["path"] == "/petalnet/predict", 10)  # written after the answer
    records = json_records(guarded)
    assert set(records[-1]) == {"time", "client", "method", "path", "status", "ms", "bytes_in", "bytes_out"}
    assert records[-1]["path"] == "/petalnet/predict" and records[-1]["status"] == 200
    assert records[-1]["bytes_in"] > len(photo[1]) and records[-1]["client"] == "127.0.0.1"
    assert records[-2]["path"] == "/petalnet/model"  # no query string in the log
    log = guarded.stderr()
    assert guarded.token not in log and "marker" not in log and "JFIF" not in log


def test_behind_a_reverse_proxy_with_a_path_prefix(guarded, photo):
    proxy = ReverseProxy(guarded.url)
    try:
        assert call(proxy.url + "/health")[0] == 200
        assert b"base + \"model\"" in call(proxy.url + "/")[2]  # the page asks relative to its own path
        status, body = post_photos(proxy.url, [photo], token=guarded.token)
        openapi = get_json(proxy.url + "/openapi.json", token=guarded.token)[1]
    finally:
        proxy.stop()
    assert status == 200 and body["predictions"][0]["path"] == photo[0]
    assert openapi["servers"] == [{"url": "/petalnet"}]
    wait_for(lambda: json_records(guarded)[-1]["path"] == "/petalnet/openapi.json", 10)
    assert json_records(guarded)[-1]["client"] == CLIENT  # X-Forwarded-For from a trusted proxy (127.0.0.1)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium; .ci/run installs it)")
def test_the_page_asks_for_the_token_once_behind_the_proxy(guarded, made_photos):
    """In a real browser, through the reverse proxy's prefix: the page asks for the token, says when one is
    refused, then classifies a photo as the API does; a reload of the tab keeps the token (sessionStorage)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    photo = sorted(made_photos.rglob("*.jpg"))[3]
    proxy = ReverseProxy(guarded.url)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
            try:
                page = browser.new_page()
                page.goto(proxy.url + "/")
                page.wait_for_selector("#login", state="visible", timeout=30_000)
                page.fill("#token", "a-wrong-token-of-enough-characters")
                page.click("#login button")
                page.wait_for_function("document.getElementById('login-error').textContent.includes('refused')")
                page.fill("#token", guarded.token)
                page.click("#login button")
                page.wait_for_function("document.getElementById('about').textContent.includes('daisy')")
                hidden = page.is_hidden("#login")
                page.set_input_files("#picker", str(photo))
                page.wait_for_selector(".card .bars .bar", timeout=30_000)
                shown_class = page.inner_text(".card .label")
                page.reload()
                page.wait_for_function("document.getElementById('about').textContent.includes('daisy')")
                asked_again = page.is_visible("#login")
            finally:
                browser.close()
        status, body = post_photos(proxy.url, [(photo.name, photo.read_bytes())], token=guarded.token)
    finally:
        proxy.stop()
    assert hidden and not asked_again
    assert status == 200 and shown_class == body["predictions"][0]["top"][0]["class"]


def test_reload_under_load_loses_no_request_and_refuses_a_bad_checkpoint(guarded, run_copy, photo):
    best = run_copy / "best.pt"
    original = best.read_bytes()
    before = top_prob(guarded, photo)
    reloaded = counter(guarded, 'petalnet_reloads_total{result="ok"}')
    changed = torch.load(best, weights_only=True)
    generator = torch.Generator().manual_seed(0)
    changed["model"] = {k: v + 0.05 * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v
                        for k, v in changed["model"].items()}
    torch.save(changed, run_copy / "changed.pt")
    stop, answers = threading.Event(), []

    def client():
        while not stop.is_set():
            answers.append(post_photos(guarded.url, [photo], token=guarded.token)[0])

    with ThreadPoolExecutor(PENDING - 1) as pool:
        try:
            for _ in range(PENDING - 1):
                pool.submit(client)
            for round_ in range(1, 4):  # to the changed model by POST /reload, back by SIGHUP
                os.replace(run_copy / "changed.pt", best)
                status, _, body = request(guarded, "POST", "/reload", guarded.token)
                assert status == 200 and json.loads(body)["status"] == "reloaded", body
                shutil.copyfile(best, run_copy / "changed.pt")
                replace(best, original)
                guarded.process.send_signal(signal.SIGHUP)
                wanted = reloaded + 2 * round_
                wait_for(lambda wanted=wanted: counter(guarded, 'petalnet_reloads_total{result="ok"}') >= wanted, 20)
            os.replace(run_copy / "changed.pt", best)
            assert request(guarded, "POST", "/reload", guarded.token)[0] == 200
        finally:
            stop.set()  # else a failed assertion above would wait for the clients forever
    assert len(answers) > 20 and set(answers) == {200}, answers
    assert abs(top_prob(guarded, photo) - before) > 1e-4  # the changed model serves now
    assert "petalnet: reloaded" in guarded.stderr()
    replace(best, b"not a checkpoint")
    status, _, body = request(guarded, "POST", "/reload", guarded.token)
    assert status == 422 and "old model keeps serving" in json.loads(body)["detail"], body
    other = torch.load(run_copy / "last.pt", weights_only=True)
    other["meta"]["classes"] = other["meta"]["classes"][::-1]
    replace(best, other)
    status, _, body = request(guarded, "POST", "/reload", guarded.token)
    assert status == 409 and "classes differ" in json.loads(body)["detail"], body
    replace(best, original)
    guarded.process.send_signal(signal.SIGHUP)
    wait_for(lambda: top_prob(guarded, photo) == pytest.approx(before, rel=1e-5), 20)


def test_tls_with_a_self_signed_certificate(trained_run, tmp_path, photo):
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(cafile=str(cert))
    server = ServerProcess(trained_run, "--tls-cert", cert, "--tls-key", key, "--device", "cpu",
                           scheme="https", context=context)
    try:
        assert post_photos(server.url, [photo], context=context)[0] == 200
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):  # not trusted
            call(server.url + "/health", context=ssl.create_default_context())
        with pytest.raises((OSError, http.client.HTTPException)):  # plain http on the https port
            call(server.url.replace("https", "http") + "/health", timeout=10)
    finally:
        assert "Traceback" not in server.stop()


def test_non_loopback_needs_a_token_or_no_auth(trained_run, monkeypatch, capsys):
    monkeypatch.delenv("PETALNET_TOKEN", raising=False)
    assert cli("serve", trained_run, "--host", "0.0.0.0") == 2
    err = capsys.readouterr().err
    assert "serving 0.0.0.0 needs a token: --token-file FILE" in err and err.count("\n") == 1, err
    server = ServerProcess(trained_run, "--host", "0.0.0.0", "--no-auth", "--device", "cpu")
    try:
        assert get_json(server.url + "/model")[0] == 200
    finally:
        assert "warning: --no-auth: anyone who can reach 0.0.0.0" in server.stop()


def test_worker_processes_get_the_token_from_the_environment_and_the_settings(trained_run, photo):
    token = "a-token-from-the-environment-0123"
    server = ServerProcess(trained_run, "--workers", "2", "--host", "0.0.0.0", "--max-upload-mb", "1",
                           "--device", "cpu", env={"PETALNET_TOKEN": token})
    try:
        assert post_photos(server.url, [photo])[0] == 401
        assert post_photos(server.url, [photo], token=token)[0] == 200
        assert post_photos(server.url, [("big.jpg", b"x" * 1_100_000)], token=token)[0] == 413
        status, _, body = request(server, "POST", "/reload", token)
        assert status == 409 and "send SIGHUP to the main process" in json.loads(body)["detail"], body
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr and token not in stderr, stderr


def test_bad_tokens_and_certificates_fail_in_one_line(trained_run, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PETALNET_TOKEN", raising=False)
    loose = tmp_path / "loose"
    loose.write_text("x" * 32)
    loose.chmod(0o644)
    empty, short, kept = tmp_path / "empty", tmp_path / "short", tmp_path / "kept"
    for path, text in ((empty, "\n"), (short, "abc\n"), (kept, "k" * 32)):
        path.write_text(text)
        path.chmod(0o600)
    cert, key = self_signed(tmp_path)
    cases = [(["--token-file", tmp_path / "missing"], "no such token file"),
             (["--token-file", empty], "is empty"),
             (["--token-file", short], "at least 16 printable characters"),
             (["--token-file", loose], f"readable by every user of this machine: chmod 600 {loose}"),
             (["--generate-token"], "--generate-token needs --token-file FILE"),
             (["--token-file", kept, "--generate-token"], "exists: serve with its token"),
             (["--tls-cert", cert], "--tls-cert and --tls-key go together"),
             (["--tls-key", key], "--tls-cert and --tls-key go together"),
             (["--tls-cert", cert, "--tls-key", tmp_path / "nokey.pem"], "no such file, or not readable"),
             (["--tls-cert", loose, "--tls-key", key], "not a PEM certificate and its unencrypted key"),
             (["--root-path", "petalnet"], "--root-path must start with /"),
             (["--max-pending", "0"], "--max-pending must be at least 1, got 0"),
             (["--request-timeout", "0"], "--request-timeout must be greater than 0"),
             (["--log-format", "xml"], "unknown --log-format 'xml'")]
    for flags, says in cases:  # in this process: each is refused before the model loads or a port opens
        assert cli("serve", trained_run, "--port", "1", *flags) == 2, flags
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, (flags, err)
    assert kept.read_text() == "k" * 32  # never replaced


class Trickle:
    """A POST /predict whose body comes a byte every 0.25 s (of 100 kB declared) from a thread."""

    def __init__(self, server, token):
        host, port = server.url.split("//")[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                          f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n--x"
                          .encode())
        self.stopped = threading.Event()
        threading.Thread(target=self._send, daemon=True).start()

    def _send(self):
        while not self.stopped.wait(0.25):
            try:
                self.sock.sendall(b"a")
            except OSError:
                return

    def answer(self):
        data = b""
        while chunk := self.sock.recv(4096):
            data += chunk
            if b"\r\n\r\n" in data and data.endswith(b"}"):
                break
        self.stopped.set()
        return data.decode("latin-1")

    def close(self):
        self.stopped.set()
        self.sock.close()


def json_records(server):
    """The server's access-log lines so far (each is written after its request's last byte)."""
    return [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]


def metrics_text(server):
    status, _, body = call(server.url + "/metrics", token=server.token)
    assert status == 200
    return body.decode()


def counter(server, name, text=None):
    for line in (text or metrics_text(server)).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def gauge(server, name):
    return counter(server, name)


def top_prob(server, photo):
    status, body = post_photos(server.url, [photo], token=server.token)
    assert status == 200, body
    return body["predictions"][0]["top"][0]["prob"]


def wait_for(condition, seconds):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.05)


def self_signed(folder):
    """A self-signed certificate for 127.0.0.1 and its key, as `openssl req -x509` makes (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"
