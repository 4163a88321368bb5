from django.apps import AppConfig


class DiscoveryConfig(AppConfig):
    name = "discovery"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing the job registers embeddings as a job of the call engine (one limit per server and account,
        # whichever of generation, judging and embedding is calling it); finished transcripts are embedded.
        from transcripts.signals import transcripts_finished

        from .embedding import on_transcripts_finished

        transcripts_finished.connect(on_transcripts_finished, dispatch_uid="discovery.on_transcripts_finished")
