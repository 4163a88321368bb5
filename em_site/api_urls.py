"""The REST API. DRF authenticates (token or session) and returns 401/403 itself, so these views are
exempt from the login-redirect middleware: a token client must never be redirected to the login page.
The schema needs a login or token too (SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]); its docs page is for a
browser, so an anonymous visitor is sent to the login page."""

from django.contrib.auth.decorators import login_not_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from browse.api import urlpatterns as browse_api
from em_site.token_api import TokenView
from transcripts.api import urlpatterns as transcripts_api

urlpatterns = [
    path("schema/", login_not_required(SpectacularAPIView.as_view()), name="api-schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("token/", login_not_required(TokenView.as_view()), name="api-token"),
    *transcripts_api,
    *browse_api,
]
