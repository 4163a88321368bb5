import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "em_site.settings")
# Celery's Django fixup runs the system checks as a worker starts and discards what they find; they would only
# load every URL and view (0.5-0.7 s of each start). `manage.py check`, every other manage.py command and
# `make test` report them.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

app = Celery("em_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
