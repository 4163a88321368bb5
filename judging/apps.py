from django.apps import AppConfig
from django.core.management import call_command
from django.db.models.signals import post_migrate


class JudgingConfig(AppConfig):
    name = "judging"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # transcripts announces finished transcripts; judging listens (judging depends on transcripts only).
        # Importing judge registers judging as a job of the call engine, so that one concurrency limit per
        # server holds whichever of generation and judging is calling it.
        from transcripts.signals import experiment_defined, judge_requests_wanted, transcripts_finished

        from .annotation import autofill
        from .results import rubrics
        from .results.judge import on_transcripts_finished

        transcripts_finished.connect(on_transcripts_finished, dispatch_uid="judging.on_transcripts_finished")
        transcripts_finished.connect(autofill.on_transcripts_finished, dispatch_uid="judging.annotation.autofill")
        # An experiment's judge is set when it is defined, and the estimate counts the judge's calls.
        experiment_defined.connect(rubrics.on_experiment_defined, dispatch_uid="judging.on_experiment_defined")
        judge_requests_wanted.connect(rubrics.judge_requests, dispatch_uid="judging.judge_requests")
        # The default cache is a database table (settings.CACHES): every migrated database has it.
        post_migrate.connect(_create_cache_table, sender=self, dispatch_uid="judging.cache_table")


def _create_cache_table(using: str, **kwargs) -> None:
    call_command("createcachetable", database=using, verbosity=0)
