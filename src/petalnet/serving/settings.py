"""`petalnet serve`'s settings, declared once (the flags come from these fields), and the checks that run
before the server starts: who may call it (a token), TLS files, and the bounds on work.

    settings = ServeSettings(host="0.0.0.0", token_file="~/.petalnet-token", generate_token=True)
    token = check_settings(settings)      # writes the token file first with generate_token; one line if wrong

Who may call it: on a loopback address (127.0.0.1, ::1, localhost, the default) the server needs no token;
on any other it refuses to start without one (--token-file FILE, else $PETALNET_TOKEN) unless --no-auth
says so. A token file must exist, hold one line of at least 16 characters and not be readable by others
(like ssh's private keys: a secret any user of the machine can read is none, so refused, not warned).
"""

import ipaddress
import os
import secrets
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from petalnet.errors import UserError
from petalnet.devices.options import device_setting
from petalnet.utils.fields import PlainValues, check_fields, setting

TOKEN_ENV = "PETALNET_TOKEN"
MIN_TOKEN_CHARS = 16
LOG_FORMATS = ("text", "json", "off")


@dataclass(frozen=True)
class ServeSettings(PlainValues):
    """How `petalnet serve` runs: where it listens, who may call it, how much work it takes on."""
    host: str = setting("127.0.0.1", "address to bind (127.0.0.1: this machine only; any other needs a token)")
    port: int = setting(8000, "port", at_least=1, at_most=65535)
    workers: int = setting(1, "server processes", at_least=1)
    device: str = device_setting()
    max_upload_mb: float = setting(10.0, "largest request body in MB (413 above)", above=0)
    token_file: str | None = setting(None, f"file holding the token clients send as 'Authorization: Bearer "
                                     f"TOKEN' (else ${TOKEN_ENV})")
    generate_token: bool = setting(False, "write a new random token to --token-file (readable by its owner "
                                   "only) and serve with it", switch=True)
    no_auth: bool = setting(False, "serve an address other than loopback without a token (anyone who reaches "
                            "the port can use it)", switch=True)
    tls_cert: str | None = setting(None, "TLS certificate (PEM): serve https")
    tls_key: str | None = setting(None, "TLS private key (PEM) of --tls-cert")
    root_path: str = setting("", "path prefix a reverse proxy serves this under, e.g. /petalnet")
    forwarded_allow_ips: str = setting("127.0.0.1,::1", "proxies whose X-Forwarded-For/-Proto are trusted "
                                       "(comma-separated; * for any)")
    max_pending: int = setting(64, "requests to /predict in progress or waiting; more get 429 + Retry-After",
                               at_least=1)
    request_timeout: float = setting(30.0, "seconds a request may take, upload included (408/503 after)",
                                     above=0)
    log_format: str = setting("text", "one access-log line per request on stderr", choices=LOG_FORMATS)


def is_loopback(host):
    """Whether binding `host` reaches this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_settings(settings):
    """Check every setting, write the token file when asked; the token (None: no authentication)."""
    check_fields(settings)
    if settings.root_path and (not settings.root_path.startswith("/") or settings.root_path.endswith("/")):
        raise UserError(f"--root-path must start with / and not end with one, got {settings.root_path!r}")
    check_tls(settings.tls_cert, settings.tls_key)
    token = read_token(settings)
    if token is None and not is_loopback(settings.host) and not settings.no_auth:
        raise UserError(f"serving {settings.host} needs a token: --token-file FILE (--generate-token writes one) "
                        f"or ${TOKEN_ENV}; --no-auth lets anyone who reaches the port use it")
    return token


def read_token(settings):
    """The token from --token-file (written first with --generate-token), else $PETALNET_TOKEN; None."""
    if settings.generate_token:
        if not settings.token_file:
            raise UserError("--generate-token needs --token-file FILE: where to write the token")
        write_new_token(Path(settings.token_file).expanduser())
    if settings.token_file:
        return token_from_file(Path(settings.token_file).expanduser())
    if os.environ.get(TOKEN_ENV) is not None:
        return checked_token(os.environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}")
    return None


def write_new_token(path):
    """A new random token in a new file that only its owner can read; never replaces a file."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(f"{path} exists: serve with its token (--token-file without --generate-token), or "
                        f"remove it to make a new one") from None
    except OSError as err:
        raise UserError(f"cannot write a token to {path}: {err.strerror}") from None
    with os.fdopen(descriptor, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    print(f"wrote a new token to {path} (readable by its owner only); clients send it as "
          f"'Authorization: Bearer TOKEN'", flush=True)


def token_from_file(path):
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"no such token file: {path} (--generate-token writes one)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read the token file {path}: {getattr(err, 'strerror', None) or err}") from None
    if mode & stat.S_IROTH:
        raise UserError(f"token file {path} is readable by every user of this machine: chmod 600 {path}")
    return checked_token(text.strip(), str(path))


def checked_token(token, where):
    if not token:
        raise UserError(f"the token in {where} is empty")
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token) or not token.isprintable():
        raise UserError(f"the token in {where} must be one word of at least {MIN_TOKEN_CHARS} printable "
                        f"characters (--generate-token writes a random one)")
    return token


def check_tls(cert, key):
    """Both or neither; readable; a key that belongs to the certificate (ssl loads them now, in one line)."""
    if bool(cert) != bool(key):
        raise UserError("--tls-cert and --tls-key go together: give both (PEM files) or neither")
    if not cert:
        return
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not os.access(path, os.R_OK) or not Path(path).is_file():
            raise UserError(f"{flag} {path}: no such file, or not readable")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key, password="")  # never a prompt
    except (ssl.SSLError, OSError) as err:
        reason = getattr(err, "reason", None) or " ".join(str(err).split())
        raise UserError(f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate and its unencrypted key "
                        f"({reason})") from None
