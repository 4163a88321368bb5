import gc
import os
from importlib import import_module

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "em_site.settings")
application = get_wsgi_application()

# Load every view (and with them statsmodels, scipy, pandas, scikit-learn) now, then move all those
# objects out of the garbage collector's reach: they live as long as the process. Otherwise every full
# collection walks ~240,000 of them, and one request in a hundred or two paid ~150-200 ms for it
# (bench/dashboard.py, docs/benchmarks.md). gc.freeze() is CPython's tool for exactly this.
import_module(settings.ROOT_URLCONF)
gc.freeze()
