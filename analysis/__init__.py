"""The statistics of misaligned rates, as plain functions of pandas frames (see docs/analysis.md).

pandas, scipy and statsmodels are imported inside the functions that use them, not at the top of a module:
together they take over 3 s of CPU to import, and every process that starts (a Celery worker, a `manage.py`
command, the web server) loads the URL configuration and with it the views that import these modules, though
most of those processes never compute a statistic. tests/em_site/test_startup.py keeps it so."""
