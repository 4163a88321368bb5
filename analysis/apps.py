from django.apps import AppConfig


class AnalysisConfig(AppConfig):
    """Research statistics over judged transcripts: the same functions serve the pages and `manage.py analyze`."""

    name = "analysis"
    default_auto_field = "django.db.models.BigAutoField"
