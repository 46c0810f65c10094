"""Admin of the registry. Secrets are never shown: their inputs render empty and a
blank submission keeps the stored value; lists show only whether one is set."""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from audit.log import record_updates
from registry import config, connection, tokens
from registry.models import (
    ApiToken,
    ConfigEntry,
    Proxy,
    SiteConfig,
    Uploader,
    Worker,
    Writer,
)
from registry.serializers import clean_base_url

SERVICE_MACHINE_FIELDS = (
    "health_status",
    "version",
    "consecutive_failures",
    "circuit_open_until",
    "last_seen_at",
    "last_checked_at",
    "last_latency_ms",
    "last_error",
    "created_at",
    "updated_at",
)
PROXY_MACHINE_FIELDS = (
    "active_sessions",
    "success_count",
    "failure_count",
    "last_used_at",
    "cooldown_until",
    "last_error",
    "last_checked_at",
    "last_latency_ms",
    "exit_ip",
    "exit_country",
    "geo_checked_at",
    "geo_mismatch",
    "created_at",
    "updated_at",
)


class SecretFieldForm(forms.ModelForm):
    """A ModelForm whose `secret_field` is write-only: left blank, the stored value
    stays; the `clear_secret` box removes it."""

    secret_field = "api_key"
    # Fields that say where the secret is sent: changing one needs the secret again.
    address_fields: tuple[str, ...] = ()
    clear_secret = forms.BooleanField(required=False, label="Remover o segredo salvo")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        field = self.fields[self.secret_field]
        field.widget = forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "new-password"}
        )
        field.required = False
        stored = bool(getattr(self.instance, self.secret_field, ""))
        field.help_text = "Definido. Deixe em branco para manter." if stored else "Nenhum definido."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("clear_secret"):
            cleaned[self.secret_field] = ""
        elif not cleaned.get(self.secret_field) and self.instance.pk:
            if self._moved(cleaned) and getattr(self.instance, self.secret_field):
                # Keeping the stored secret would send it to the new address.
                self.add_error(self.secret_field, "Informe o segredo de novo ao mudar o endereço.")
                return cleaned
            # The instance still holds the stored value: fields are copied onto it later.
            cleaned[self.secret_field] = getattr(self.instance, self.secret_field)
        return cleaned

    def _moved(self, cleaned: dict[str, Any]) -> bool:
        return any(
            name in cleaned and cleaned[name] != getattr(self.instance, name)
            for name in self.address_fields
        )


class ServiceForm(SecretFieldForm):
    secret_field = "api_key"
    address_fields = ("base_url",)
    # As in the API: http(s) only, single-label hosts (http://worker:8000) allowed.
    base_url = forms.CharField(max_length=500)

    def clean_base_url(self) -> str:
        try:
            return clean_base_url(self.cleaned_data["base_url"])
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    def clean(self) -> dict[str, Any]:
        new_key = self.cleaned_data.get("api_key")
        moved = self.instance.pk and self.cleaned_data.get("base_url") not in (
            None,
            self.instance.base_url,
        )
        if (
            moved
            and self.instance.api_key
            and not new_key
            and not self.cleaned_data.get("clear_secret")
        ):
            # Keeping the stored key would send it to the new host: ask for it again.
            self.add_error("api_key", "Informe a chave de API de novo ao mudar a URL base.")
        return super().clean()


class WriterForm(ServiceForm):
    def _get_validation_exclusions(self) -> set[str]:
        # One default writer is kept by save_model, which unsets the others first.
        return {*super()._get_validation_exclusions(), "is_default"}  # type: ignore[misc]


class ProxyForm(SecretFieldForm):
    secret_field = "password"
    address_fields = ("scheme", "host", "port", "username")


INLINE_TESTS = 5


@admin.action(description="Ativar selecionados")
def enable(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    record_updates(queryset, ["enabled"])
    count = queryset.update(enabled=True, updated_at=timezone.now())
    modeladmin.message_user(request, f"{count} ativado(s).", messages.SUCCESS)


@admin.action(description="Desativar selecionados")
def disable(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    record_updates(queryset, ["enabled"])
    count = queryset.update(enabled=False, updated_at=timezone.now())
    modeladmin.message_user(request, f"{count} desativado(s).", messages.SUCCESS)


@admin.action(description="Testar conexão")
def test_connection(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    if queryset.count() > INLINE_TESTS:
        # Each test may take seconds: many of them run in the django-q2 cluster.
        from django_q.tasks import async_task

        ids = list(queryset.values_list("pk", flat=True))
        async_task("registry.tasks.test_connections", queryset.model._meta.label, ids)
        modeladmin.message_user(
            request,
            f"{len(ids)} testes de conexão enfileirados; os resultados aparecem nas linhas.",
            messages.INFO,
        )
        return
    for obj in queryset:
        result = connection.check_connection(obj)
        if result.ok:
            modeladmin.message_user(
                request,
                f"{obj}: OK ({result.status_class}, {result.latency_ms} ms)",
                messages.SUCCESS,
            )
        else:
            modeladmin.message_user(request, f"{obj}: falhou — {result.error}", messages.ERROR)


class ServiceAdmin(admin.ModelAdmin):
    form = ServiceForm
    list_display: tuple[str, ...] = (
        "name",
        "base_url",
        "enabled",
        "health_status",
        "key_set",
        "last_checked_at",
        "last_latency_ms",
    )
    list_filter: ClassVar[tuple[str, ...]] = ("enabled", "health_status")
    search_fields = ("name", "base_url")
    readonly_fields: ClassVar[tuple[str, ...]] = SERVICE_MACHINE_FIELDS
    actions = (enable, disable, test_connection)

    @admin.display(boolean=True, description="Chave de API")
    def key_set(self, obj: Worker | Writer | Uploader) -> bool:
        return obj.has_api_key


@admin.register(Worker)
class WorkerAdmin(ServiceAdmin):
    list_display = (*ServiceAdmin.list_display[:4], "draining", "capacity", "key_set")
    list_filter = ("enabled", "health_status", "draining")
    readonly_fields = (
        *SERVICE_MACHINE_FIELDS,
        "active_sessions",
        "reported_active_sessions",
        "reported_max_sessions",
    )

    @admin.display(description="Sessões", ordering="active_sessions")
    def capacity(self, obj: Worker) -> str:
        return f"{obj.active_sessions}/{obj.max_sessions}"


@admin.register(Writer)
class WriterAdmin(ServiceAdmin):
    form = WriterForm
    list_display = (*ServiceAdmin.list_display[:4], "is_default", "key_set", "last_checked_at")
    list_filter = ("enabled", "health_status", "is_default")

    def save_model(
        self, request: HttpRequest, obj: Writer, form: forms.ModelForm, change: bool
    ) -> None:
        if obj.is_default:
            obj.other_defaults().update(is_default=False)
        super().save_model(request, obj, form, change)


@admin.register(Uploader)
class UploaderAdmin(ServiceAdmin):
    pass


@admin.register(Proxy)
class ProxyAdmin(admin.ModelAdmin):
    form = ProxyForm
    list_display = (
        "external_id",
        "type",
        "country",
        "address",
        "enabled",
        "status",
        "usage",
        "geo",
        "success_count",
        "failure_count",
        "last_used_at",
    )
    list_filter = ("type", "country", "status", "enabled", "geo_mismatch", "scheme", "provider")
    search_fields = ("external_id", "host", "provider")
    readonly_fields = PROXY_MACHINE_FIELDS
    actions = (enable, disable, test_connection)

    @admin.display(description="Endereço", ordering="host")
    def address(self, obj: Proxy) -> str:
        return obj.masked_url

    @admin.display(description="Sessões", ordering="active_sessions")
    def usage(self, obj: Proxy) -> str:
        return f"{obj.active_sessions}/{obj.max_sessions}"

    @admin.display(description="Geo verificado")
    def geo(self, obj: Proxy) -> str:
        if obj.geo_mismatch:
            return f"divergente: saída {obj.exit_country} ({obj.exit_ip})"
        if obj.geo_verified:
            return f"sim ({obj.exit_ip})"
        return "não verificado"


@admin.register(SiteConfig)
class SiteConfigAdmin(admin.ModelAdmin):
    list_display = (
        "domain",
        "types",
        "country_list",
        "max_sessions",
        "max_concurrent_sessions",
        "min_delay_ms",
        "max_requests_per_minute",
        "respect_robots",
        "items_per_job",
        "engine",
        "enabled",
    )
    list_filter = ("enabled", "engine")
    search_fields = ("domain",)
    readonly_fields = ("created_at", "updated_at")
    actions = (enable, disable)

    @admin.display(description="Tipos de proxy")
    def types(self, obj: SiteConfig) -> str:
        if obj.proxy_types is None:
            return "herda"
        return ", ".join(obj.proxy_types) or "todos"

    @admin.display(description="Países")
    def country_list(self, obj: SiteConfig) -> str:
        if obj.countries is None:
            return "herda"
        return ", ".join(obj.countries) or "todos"


class ConfigEntryForm(forms.ModelForm):
    key = forms.ChoiceField(choices=[(k, k) for k in config.KEYS])

    class Meta:
        model = ConfigEntry
        fields = ("key", "value")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["key"].disabled = True

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        spec = config.KEYS.get(cleaned.get("key", ""))
        if spec is not None and "value" in cleaned:
            try:
                cleaned["value"] = spec.clean(cleaned["value"])
            except ValidationError as exc:
                self.add_error("value", exc)
        return cleaned


@admin.register(ConfigEntry)
class ConfigEntryAdmin(admin.ModelAdmin):
    form = ConfigEntryForm
    list_display = ("key", "value", "default", "description", "updated_at")
    search_fields = ("key",)

    @admin.display(description="Padrão")
    def default(self, obj: ConfigEntry) -> Any:
        spec = config.KEYS.get(obj.key)
        return spec.default if spec else "—"

    @admin.display(description="Descrição")
    def description(self, obj: ConfigEntry) -> str:
        spec = config.KEYS.get(obj.key)
        return spec.description if spec else "chave desconhecida"


# DRF's own token admin would list keys in clear; tokens live in ApiToken now.
try:
    from rest_framework.authtoken.models import TokenProxy

    admin.site.unregister(TokenProxy)
except NotRegistered:  # pragma: no cover - depends on app order
    pass


@admin.action(description="Revogar selecionados")
def revoke_tokens(modeladmin: admin.ModelAdmin, request: HttpRequest, qs: QuerySet) -> None:
    count = tokens.revoke(qs)
    modeladmin.message_user(request, f"{count} token(s) revogado(s).", messages.SUCCESS)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are issued by POST /api/auth/token/ only (the key is shown once there);
    here they are listed by prefix and revoked."""

    list_display = ("prefix", "user", "created_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "user__username")
    readonly_fields = ("user", "prefix", "created_at", "expires_at", "revoked_at")
    exclude = ("digest",)
    actions = [revoke_tokens]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
