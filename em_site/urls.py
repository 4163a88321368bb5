from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views import defaults

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
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
