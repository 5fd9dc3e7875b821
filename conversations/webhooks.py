"""Signed callbacks: POST the finished reply to the conversation's callback_url.

Header `X-AgencyHub-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the tenant's webhook secret>`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings

SIGNATURE_HEADER = "X-AgencyHub-Signature"


class CallbackError(Exception):
    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, tolerance_seconds: int = 300) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


def callback_url_problem(url: str, *, resolve: bool) -> str | None:
    """Why a callback URL may not be called (None if it may): it must be http(s), and — unless
    CALLBACK_ALLOW_PRIVATE_HOSTS — reach only public addresses, so that a client's callback cannot make the
    workers POST to loopback, the private network or a cloud metadata service. `resolve` also looks the host up."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL"
    if settings.CALLBACK_ALLOW_PRIVATE_HOSTS:
        return None
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        return _NOT_PUBLIC
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if not resolve:
            return None
        try:
            found = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except OSError:
            return None  # unresolvable now: the call itself fails and is retried
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in found]
    return None if all(address.is_global for address in addresses) else _NOT_PUBLIC


_NOT_PUBLIC = "must be a public address (not loopback, private, link-local or reserved)"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer (not followed): it could lead to an address the check above refuses."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post_signed(url: str, payload: dict, secret: str, timeout: float = 10.0) -> int:
    problem = callback_url_problem(url, resolve=True)
    if problem:
        raise CallbackError(f"callback_url {problem}", retryable=False)
    body = json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "AgencyHub-Webhook/1", SIGNATURE_HEADER: sign(secret, body)},
    )
    try:
        with _opener.open(request, timeout=timeout) as response:  # the URL was checked above
            return response.status
    except urllib.error.HTTPError as exc:
        raise CallbackError(f"callback answered {exc.code}", retryable=exc.code >= 500 or exc.code == 429) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise CallbackError(f"callback failed: {exc}", retryable=True) from exc
