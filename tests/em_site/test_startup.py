"""What a starting process pays for: every Celery worker and `manage.py` command runs the system checks, which
load the URL configuration and every view, and a worker imports every task module; the statistics libraries,
the `openai` client (with aiohttp and the SDK's types: 0.8 s of a 2.3 s start) and pyarrow must not come with
them, only with the work that uses them (analysis/__init__.py says why)."""

import os
import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("pandas", "scipy", "statsmodels", "sklearn", "openai", "aiohttp", "pyarrow")

LOAD_AND_LIST = f"""
import sys, django
django.setup()
from django.core.checks import run_checks
run_checks()
from em_site.celery import app
app.loader.import_default_modules()
print(sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r})))
"""


def test_the_system_checks_and_the_task_modules_load_without_the_heavy_libraries():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "em_site.settings"}
    result = subprocess.run([sys.executable, "-c", LOAD_AND_LIST], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
