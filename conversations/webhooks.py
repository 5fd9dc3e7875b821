"""Signed callbacks: POST the finished reply to the conversation's callback_url.

Header `X-AgencyHub-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the tenant's webhook secret>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

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


def post_signed(url: str, payload: dict, secret: str, timeout: float = 10.0) -> int:
    body = json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "AgencyHub-Webhook/1", SIGNATURE_HEADER: sign(secret, body)},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - URL is staff/client configured
            return response.status
    except urllib.error.HTTPError as exc:
        raise CallbackError(f"callback answered {exc.code}", retryable=exc.code >= 500 or exc.code == 429) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise CallbackError(f"callback failed: {exc}", retryable=True) from exc
