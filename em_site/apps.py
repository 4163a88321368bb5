from django.apps import AppConfig
from django.db.models.signals import post_save, pre_save


class EmSiteConfig(AppConfig):
    name = "em_site"

    def ready(self) -> None:
        # In every process (web, worker, management commands): a password changes wherever a User is saved.
        from django.contrib.auth.models import User

        from .auth import note_password_change, revoke_tokens_on_password_change

        pre_save.connect(note_password_change, sender=User, dispatch_uid="em_site.note_password_change")
        post_save.connect(revoke_tokens_on_password_change, sender=User, dispatch_uid="em_site.revoke_tokens")
