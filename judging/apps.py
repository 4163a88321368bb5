from django.apps import AppConfig


class JudgingConfig(AppConfig):
    name = "judging"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # transcripts announces finished transcripts; judging listens (judging depends on transcripts only).
        # Importing judge registers judging as a job of the call engine, so that one concurrency limit per
        # server holds whichever of generation and judging is calling it.
        from transcripts.signals import experiment_defined, judge_requests_wanted, transcript_finished

        from . import autofill, rubrics
        from .judge import on_transcript_finished

        transcript_finished.connect(on_transcript_finished, dispatch_uid="judging.on_transcript_finished")
        transcript_finished.connect(autofill.on_transcript_finished, dispatch_uid="judging.autofill")
        # An experiment's judge is set when it is defined, and the estimate counts the judge's calls.
        experiment_defined.connect(rubrics.on_experiment_defined, dispatch_uid="judging.on_experiment_defined")
        judge_requests_wanted.connect(rubrics.judge_requests, dispatch_uid="judging.judge_requests")
