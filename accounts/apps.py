from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # A key, token, user, team membership or team (its rate limits) edited anywhere (the admin,
        # the API, a shell) is forgotten by every process's key cache (accounts.services.key_authenticate_cached).
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save
        from rest_framework.authtoken.models import Token

        from accounts.models import ApiKey, Membership, Team
        from accounts.services import key_rows_changed

        for model in (ApiKey, Token, get_user_model(), Membership, Team):
            post_save.connect(key_rows_changed, sender=model, dispatch_uid=f"keys-changed-saved-{model.__name__}")
            post_delete.connect(key_rows_changed, sender=model, dispatch_uid=f"keys-changed-deleted-{model.__name__}")
