"""What a starting process pays for: every Celery worker and `manage.py` command runs the system checks, which
load the URL configuration and every view; the statistics libraries must not come with them
(analysis/__init__.py says why)."""

import os
import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("pandas", "scipy", "statsmodels", "sklearn")

LOAD_AND_LIST = f"""
import sys, django
django.setup()
from django.core.checks import run_checks
run_checks()
print(sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r})))
"""


def test_the_system_checks_load_every_view_without_the_statistics_libraries():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "em_site.settings"}
    result = subprocess.run([sys.executable, "-c", LOAD_AND_LIST], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
