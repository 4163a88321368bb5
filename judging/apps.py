from django.apps import AppConfig


class JudgingConfig(AppConfig):
    name = "judging"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # transcripts announces finished transcripts; judging listens (judging depends on transcripts only).
        # Importing judge registers judging as a job of the call engine, so that one concurrency limit per
        # server holds whichever of generation and judging is calling it.
        from transcripts.signals import transcript_finished

        from .judge import on_transcript_finished

        transcript_finished.connect(on_transcript_finished, dispatch_uid="judging.on_transcript_finished")
