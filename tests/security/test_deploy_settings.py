"""Production settings: Django's deploy check passes with the environment the README documents, DEBUG is off
when nothing is set, HTTPS is enforced behind the proxy, the app's own secrets can never be declared as endpoint
keys, and the image does not run as root."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT


def readme_production_environment() -> dict[str, str]:
    """The `NAME=value` lines of the README's production-environment block."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"The production environment behind a TLS proxy.*?```sh\n(.*?)```", readme, re.DOTALL)
    assert block, "README.md lost its production environment block"
    variables = dict(line.split("=", 1) for line in block.group(1).splitlines() if line.strip())
    variables["SECRET_KEY"] = secrets.token_urlsafe(50)  # the README's `$(openssl rand -base64 48)`
    return variables


def bare_environment(tmp_path, **variables: str) -> dict[str, str]:
    """Only what a process needs to start, plus `variables`: none of the caller's settings leak in."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "EM_VAR_DIR": str(tmp_path),
            **variables}


def test_the_deploy_check_passes_with_the_readme_production_environment(tmp_path):
    environment = readme_production_environment()
    assert environment["DEBUG"] == "false"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=bare_environment(tmp_path, **environment), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_deploy_check_fails_without_the_https_settings(tmp_path):
    """The check is not vacuous: leave out the proxy's HTTPS settings and it names what is missing."""
    environment = {k: v for k, v in readme_production_environment().items() if not k.startswith("SECURE_")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=bare_environment(tmp_path, **environment), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr


def _check(tmp_path, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT, env=bare_environment(tmp_path, **variables), capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("variable", ["SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"])
def test_the_apps_own_variables_cannot_be_declared_as_endpoint_keys(tmp_path, variable):
    """Declared, any endpoint naming it (an admin's, or one a researcher chose) would send it to a model
    server as its API key: the app refuses to start and says which variable and why."""
    refused = _check(tmp_path, ENDPOINT_KEY_VARIABLES=f"OPENAI_API_KEY,{variable}")
    assert refused.returncode != 0
    assert f"ENDPOINT_KEY_VARIABLES may not include {variable}:" in refused.stderr
    assert "must never be sent to a model server" in refused.stderr


def test_an_ordinary_endpoint_key_variable_is_accepted(tmp_path):
    """The refusal above is about those variables, not about declaring keys at all."""
    accepted = _check(tmp_path, ENDPOINT_KEY_VARIABLES="OPENAI_API_KEY,ANTHROPIC_API_KEY")
    assert accepted.returncode == 0, accepted.stderr
    assert "no issues" in accepted.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _serve_and_get(tmp_path, *paths: str, **variables: str) -> list[tuple[int, str]]:
    """Start the image's web server (gunicorn) with only `variables` set and GET each path from it."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "em_site.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT, env=bare_environment(tmp_path, **variables), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        return [_get(f"http://127.0.0.1:{port}{path}") for path in paths]
    finally:
        server.terminate()
        server.wait(15)


@pytest.mark.slow
def test_a_server_started_without_environment_shows_no_debug_page(tmp_path):
    (status, body), (css_status, css) = _serve_and_get(tmp_path, "/no-such-page/", "/static/css/app.css")
    assert status == 404
    assert "URLconf" not in body and "DEBUG = True" not in body and "em_site.urls" not in body
    # Without DEBUG and without collectstatic (a checkout, `make run`) the static files are still served.
    assert css_status == 200 and "{" in css
    # The same request with DEBUG=true shows Django's debug page: the assertions above can tell them apart.
    [(status, body)] = _serve_and_get(tmp_path, "/no-such-page/", DEBUG="true")
    assert status == 404 and "em_site.urls" in body


@pytest.mark.django_db
def test_behind_the_proxy_http_is_redirected_and_https_gets_hsts(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000
    plain = client.get("/login/", HTTP_X_FORWARDED_PROTO="http")
    assert plain.status_code == 301 and plain["Location"].startswith("https://")
    secure = client.get("/login/", HTTP_X_FORWARDED_PROTO="https")
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")


def test_the_image_runs_as_a_non_root_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    users = re.findall(r"^USER\s+(\S+)", final_stage, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), "the image's processes would run as root"
    # The command comes after the switch, so gunicorn, the workers and the model server all run as that user.
    assert final_stage.index(f"USER {users[-1]}") < final_stage.index("CMD")
