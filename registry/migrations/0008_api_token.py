"""API tokens hashed at rest: ApiToken, and the keys of DRF's plaintext tokens moved
in as hashes (then deleted, so no key stays in clear)."""

import datetime as dt
import hashlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def move_plaintext_tokens(apps, schema_editor):
    Token = apps.get_model("authtoken", "Token")
    ApiToken = apps.get_model("registry", "ApiToken")
    days = getattr(settings, "API_TOKEN_TTL_DAYS", 30)
    for old in Token.objects.all():
        ApiToken.objects.create(
            user_id=old.user_id,
            digest=hashlib.sha256(old.key.encode()).hexdigest(),
            prefix=old.key[:12],
            expires_at=old.created + dt.timedelta(days=days) if days > 0 else None,
        )
    Token.objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0007_site_providers"),
        ("authtoken", "0004_alter_tokenproxy_options"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ApiToken",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "digest",
                    models.CharField(
                        editable=False, max_length=64, unique=True, verbose_name="hash"
                    ),
                ),
                ("prefix", models.CharField(editable=False, max_length=12, verbose_name="prefixo")),
                ("created_at", models.DateTimeField(auto_now_add=True, verbose_name="criado em")),
                (
                    "expires_at",
                    models.DateTimeField(blank=True, null=True, verbose_name="expira em"),
                ),
                (
                    "revoked_at",
                    models.DateTimeField(blank=True, null=True, verbose_name="revogado em"),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="api_tokens",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="usuário",
                    ),
                ),
            ],
            options={
                "verbose_name": "token de API",
                "verbose_name_plural": "tokens de API",
                "indexes": [
                    models.Index(fields=["user", "revoked_at"], name="apitoken_user_live_idx")
                ],
            },
        ),
        migrations.RunPython(move_plaintext_tokens, migrations.RunPython.noop),
    ]
