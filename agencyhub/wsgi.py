import io
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agencyhub.settings")
django_application = get_wsgi_application()


def application(environ, start_response):
    """Django reads a request body by its Content-Length, so a body sent with `Transfer-Encoding: chunked` (no
    length; gunicorn hands it over de-chunked) would read as empty. Read it here, up to one byte over the limit,
    and give Django its length: RequestSizeLimitMiddleware then answers 413 to a body over MAX_REQUEST_BYTES."""
    if not environ.get("CONTENT_LENGTH") and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        from django.conf import settings

        body = environ["wsgi.input"].read(settings.MAX_REQUEST_BYTES + 1)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
    return django_application(environ, start_response)
