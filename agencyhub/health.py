from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from agencyhub.exceptions import error_body


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


READY_DB_TIMEOUT_SECONDS = 2.0  # a probe answers fast: the pool's own wait for a connection is 30 s


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when the database and the shared cache answer."""
    checks: dict[str, str] = {}
    try:
        pool = getattr(connection, "pool", None)  # the psycopg pool (DATABASE_POOL_MAX_SIZE), else a plain connection
        if pool is not None:
            pool.open()  # as Django does before its first checkout (a no-op once open)
            with pool.connection(timeout=READY_DB_TIMEOUT_SECONDS) as conn:
                conn.execute("SELECT 1")
        else:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        cache.set("readyz", "1", 5)
        checks["cache"] = "ok" if cache.get("readyz") == "1" else "error: no round-trip"
    except Exception as exc:  # noqa: BLE001
        checks["cache"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(("/api/", "/v1/"))


@csrf_exempt  # the API's catch-all: a POST to a path the API lacks is a JSON 404, not Django's CSRF page
def not_found(request: HttpRequest, exception: Exception | None = None):
    if _is_api(request):
        return JsonResponse(error_body("not_found_error", "not_found", f"no such endpoint: {request.path}"), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception | None = None):
    """Django's own 400s (a Host not allowed, too many form fields, …): JSON in the API's error shape on the API."""
    if _is_api(request):
        return JsonResponse(error_body("invalid_request_error", "bad_request", "bad request"), status=400)
    from django.views.defaults import bad_request as default

    return default(request, exception)


def server_error(request: HttpRequest):
    if _is_api(request):
        return JsonResponse(error_body("api_error", "internal_error", "internal error; the incident was logged"), status=500)
    from django.views.defaults import server_error as default

    return default(request)
