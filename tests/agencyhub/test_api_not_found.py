import pytest
from django.test import Client


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/responses", "/api/v1/nope"])
def test_a_path_the_api_lacks_is_a_json_404_for_every_method(db, method, path):
    """docs/api.md: 404 `not_found` for a path the API does not have (any method), not Django's CSRF page."""
    client = Client(enforce_csrf_checks=True)
    body = {} if method == "get" else {"data": "{}", "content_type": "application/json"}
    response = getattr(client, method)(path, **body)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
