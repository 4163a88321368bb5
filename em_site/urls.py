from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.templatetags.static import static
from django.urls import include, path
from django.views import defaults
from django.views.generic import RedirectView

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico on pages without the <link rel="icon"> of base.html (JSON, files).
    # An icon, not a page: no login (the static file it points at is served before authentication anyway).
    path("favicon.ico", login_not_required(RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
         name="favicon"),
    path("api/", include("em_site.api_urls")),
    path("", include("transcripts.urls")),
    path("", include("judging.urls")),
    path("", include("browse.urls")),
]


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """An API client gets a 404 in the API's own form (JSON, as its schema says), a browser the page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


handler404 = not_found
