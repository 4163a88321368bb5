from django.apps import AppConfig


class TranscriptsConfig(AppConfig):
    name = "transcripts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers generation as a job of the call engine (transcripts/engine/) in every process.
        from . import generation  # noqa: F401
