"""A body sent with `Transfer-Encoding: chunked` (no Content-Length) is read, through the WSGI entry point that
gunicorn serves: Django alone would read it as empty and answer "field required"."""

import io
import json

import pytest

from agencyhub.wsgi import application


def call(body: bytes, key: str, path: str = "/v1/chat/completions") -> tuple[str, dict]:
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(), "CONTENT_TYPE": "application/json",
        "HTTP_TRANSFER_ENCODING": "chunked", "HTTP_AUTHORIZATION": f"Bearer {key}", "wsgi.input_terminated": True,
    }
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"] = status

    content = b"".join(application(environ, start_response))
    return started["status"], json.loads(content)


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_is_read(tenant_and_key, policy):
    _, key = tenant_and_key
    status, body = call(json.dumps({"model": "auto", "messages": [{"role": "user", "content": "chunked"}]}).encode(), key)
    assert status.startswith("200") and body["choices"][0]["message"]["content"].endswith("chunked")


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_over_the_limit_answers_413(tenant_and_key, settings):
    settings.MAX_REQUEST_BYTES = 1000
    _, key = tenant_and_key
    status, body = call(b"{" + b" " * 5000 + b"}", key)
    assert status.startswith("413") and body["error"]["type"] == "request_too_large"
