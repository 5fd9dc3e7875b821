from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from agencyhub import health, metrics
from conversations.api import openai_compat, openai_models

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("conversations.api.urls")),
    path("billing/", include("billing.urls")),
    path("v1/chat/completions", openai_compat.ChatCompletions.as_view(), name="chat-completions"),
    path("v1/models", openai_models.ModelList.as_view(), name="models"),
    path("v1/models/<path:model_id>", openai_models.ModelDetail.as_view(), name="model-detail"),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    # Anything else under the API: the JSON 404 (handler404 covers it too, except under DEBUG, which shows Django's page).
    re_path(r"^(?:api|v1)/", health.not_found),
]

handler400 = "agencyhub.health.bad_request"
handler404 = "agencyhub.health.not_found"
handler500 = "agencyhub.health.server_error"
