"""Forms of the dashboard. Domain functions raise English ValidationErrors; this layer
shows them in Portuguese."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from registry import site_rules
from registry.models import Proxy, SiteConfig, Uploader, Worker, Writer

MAX_UPLOAD_BYTES = 20 * 1024 * 1024

_TRANSLATIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^Must be a string\.$"), "Deve ser um texto."),
    (re.compile(r"^Empty URL\.$"), "URL vazia."),
    (re.compile(r"^URL longer than (\d+) characters\.$"), r"URL com mais de \1 caracteres."),
    (
        re.compile(r"^Must be an absolute http or https URL\.$"),
        "Deve ser uma URL absoluta http ou https.",
    ),
    (re.compile(r"^At least one URL is required\.$"), "Informe ao menos uma URL."),
    (re.compile(r"^At most (\d+) URLs per mission\.$"), r"No máximo \1 URLs por missão."),
    (re.compile(r"^This field may not be blank\.$"), "Este campo não pode ficar em branco."),
    (
        re.compile(r"^session_stuck_after_s \((\d+)\) must be at least lease_s \((\d+)\)\.$"),
        r"session_stuck_after_s (\1 s) deve ser ao menos lease_s (\2 s): "
        "uma sessão só trava depois que a reserva expira.",
    ),
    (re.compile(r"^\S+ must be a boolean\.$"), "Deve ser verdadeiro ou falso."),
    (re.compile(r"^\S+ must be an integer\.$"), "Deve ser um número inteiro."),
    (re.compile(r"^\S+ must be a number\.$"), "Deve ser um número."),
    (re.compile(r"^\S+ must be a string\.$"), "Deve ser um texto."),
    (re.compile(r"^\S+ must be at least (.+)\.$"), r"Deve ser no mínimo \1."),
    (re.compile(r"^\S+ must be at most (.+)\.$"), r"Deve ser no máximo \1."),
]
_LINE = re.compile(r"^(\d+): (.*)$", re.S)


def _decimal_comma(m: re.Match[str]) -> str:
    whole, frac = m.group(1), m.group(2).rstrip("0")
    return f"{whole},{frac}" if frac else whole


def to_pt(message: str) -> str:
    """Translate one domain validation message into pt-BR (unknown ones pass through)."""
    line = ""
    m = _LINE.match(message)
    if m:
        line, message = f"Linha {int(m.group(1)) + 1}: ", m.group(2)
    for pattern, repl in _TRANSLATIONS:
        if pattern.match(message):
            message = re.sub(r"(\d+)\.(\d+)", _decimal_comma, pattern.sub(repl, message))
            break
    return line + message


def add_domain_errors(form: forms.Form, exc: ValidationError, default_field: str) -> None:
    """Attach a domain ValidationError to `form`, translated into Portuguese."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.message_dict.items():
            target = name if name in form.fields else default_field
            for msg in errors:
                form.add_error(target, to_pt(msg))
    else:
        for msg in exc.messages:
            form.add_error(default_field, to_pt(msg))


class Styled:
    """Gives every text-like widget the dashboard's input look."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():  # type: ignore[attr-defined]
            widget = field.widget
            if isinstance(widget, forms.CheckboxInput | forms.CheckboxSelectMultiple):
                continue
            widget.attrs["class"] = ("input " + widget.attrs.get("class", "")).strip()

    def full_clean(self) -> None:
        super().full_clean()  # type: ignore[misc]
        for name in self.errors:  # type: ignore[attr-defined]
            if name in self.fields:  # type: ignore[attr-defined]
                self.fields[name].widget.attrs["aria-invalid"] = "true"  # type: ignore[attr-defined]


# --- Missões --------------------------------------------------------------------------


class MissionForm(Styled, forms.Form):
    name = forms.CharField(label="Nome", max_length=200)
    urls = forms.CharField(
        label="URLs",
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "placeholder": "https://exemplo.com.br/produto/1"}),
        help_text="Uma URL por linha.",
    )
    file = forms.FileField(
        label="Ou envie um arquivo TXT/CSV",
        required=False,
        help_text="TXT com uma URL por linha, ou CSV com as URLs na primeira coluna (ou na coluna url).",
    )
    etl_domain = forms.CharField(
        label="Ou retome a execução ETL do domínio",
        required=False,
        max_length=253,
        help_text="Sem URLs: a missão recebe os itens pendentes da última execução ETL "
        "não concluída deste domínio.",
    )
    etl_run = forms.RegexField(
        label="Execução ETL a retomar (opcional)",
        regex=r"^[A-Za-z0-9._:-]{1,100}$",
        required=False,
        help_text="O id de uma execução ETL, em vez da última do domínio.",
    )
    priority = forms.IntegerField(
        label="Prioridade",
        initial=0,
        min_value=-1000,
        max_value=1000,
        help_text="Maior roda primeiro.",
    )
    writer = forms.ModelChoiceField(
        label="Writer",
        queryset=Writer.objects.filter(enabled=True),
        required=False,
        empty_label="Writer padrão",
    )

    def clean_file(self) -> Any:
        f = self.cleaned_data.get("file")
        if f is None:
            return None
        name = f.name.lower()
        if not name.endswith((".txt", ".csv")):
            raise ValidationError("Envie um arquivo .txt ou .csv.")
        if f.size > MAX_UPLOAD_BYTES:
            raise ValidationError("Arquivo grande demais (máximo 20 MB).")
        return f

    def url_list(self) -> list[str]:
        urls = [line.strip() for line in (self.cleaned_data.get("urls") or "").splitlines()]
        urls = [u for u in urls if u]
        f = self.cleaned_data.get("file")
        if f is not None:
            try:
                text = f.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                raise ValidationError({"file": "O arquivo precisa estar em UTF-8."}) from None
            if f.name.lower().endswith(".csv"):
                rows = list(csv.reader(io.StringIO(text)))
                col = 0
                if rows and "url" in [c.strip().lower() for c in rows[0]]:
                    col = [c.strip().lower() for c in rows[0]].index("url")
                    rows = rows[1:]
                urls += [r[col].strip() for r in rows if len(r) > col and r[col].strip()]
            else:
                urls += [line.strip() for line in text.splitlines() if line.strip()]
        return urls

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        resume = data.get("etl_domain") or data.get("etl_run")
        if (
            not self.errors
            and not (data.get("urls") or "").strip()
            and not data.get("file")
            and not resume
        ):
            self.add_error("urls", "Cole as URLs, envie um arquivo ou retome uma execução ETL.")
        return data


# --- Recursos -------------------------------------------------------------------------


class SecretInput(forms.PasswordInput):
    """A password input that never renders the stored value."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(
            attrs={"autocomplete": "new-password", **(attrs or {})}, render_value=False
        )


class KeepSecretMixin:
    """A blank secret field keeps the stored value; `clear_<field>` empties it."""

    secret_field = ""
    # Fields that say where the secret is sent: changing one needs the secret again.
    address_fields: tuple[str, ...] = ("base_url",)
    moved_message = "Informe a chave de API de novo ao mudar a URL base."

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean()  # type: ignore[misc]
        name = self.secret_field
        instance = self.instance  # type: ignore[attr-defined]
        if not data.get(name) and instance.pk and not data.get(f"clear_{name}"):
            moved = any(
                f in data and data[f] != getattr(instance, f, None) for f in self.address_fields
            )
            if moved and getattr(instance, name):
                # Keeping the stored secret would send it to the new host: ask for it again.
                self.add_error(name, self.moved_message)  # type: ignore[attr-defined]
                return data
            data[name] = getattr(instance, name)
        return data


def _formfield(db_field: Any, **kwargs: Any) -> Any:
    if db_field.get_internal_type() == "URLField" or db_field.__class__.__name__ == "URLField":
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


SERVICE_LABELS = {
    "name": "Nome",
    "base_url": "URL base",
    "api_key": "Chave de API",
    "enabled": "Ativo",
}


class WorkerForm(Styled, KeepSecretMixin, forms.ModelForm):
    secret_field = "api_key"
    clear_api_key = forms.BooleanField(label="Remover a chave salva", required=False)
    providers = forms.MultipleChoiceField(
        label="Provedores",
        choices=[("local", "Local"), ("browserbase", "Browserbase")],
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )

    class Meta:
        model = Worker
        formfield_callback = _formfield
        fields = ["name", "base_url", "api_key", "providers", "max_sessions", "enabled", "draining"]
        labels = {**SERVICE_LABELS, "max_sessions": "Máx. de sessões", "draining": "Drenando"}
        help_texts = {
            "draining": "Mantém as sessões atuais, mas não recebe novas.",
            "api_key": "Deixe em branco para manter a chave salva.",
        }
        widgets = {"api_key": SecretInput()}


class WriterForm(Styled, KeepSecretMixin, forms.ModelForm):
    secret_field = "api_key"
    clear_api_key = forms.BooleanField(label="Remover a chave salva", required=False)

    class Meta:
        model = Writer
        formfield_callback = _formfield
        fields = ["name", "base_url", "api_key", "is_default", "max_batch_records", "enabled"]
        labels = {
            **SERVICE_LABELS,
            "is_default": "Writer padrão",
            "max_batch_records": "Registros por lote",
        }
        help_texts = {"api_key": "Deixe em branco para manter a chave salva."}
        widgets = {"api_key": SecretInput()}

    def clean_is_default(self) -> bool:
        value = bool(self.cleaned_data.get("is_default"))
        if value and self.instance.other_defaults().exists():
            raise ValidationError("Já existe um writer padrão; desmarque-o primeiro.")
        return value


class UploaderForm(Styled, KeepSecretMixin, forms.ModelForm):
    secret_field = "api_key"
    clear_api_key = forms.BooleanField(label="Remover a chave salva", required=False)

    class Meta:
        model = Uploader
        formfield_callback = _formfield
        fields = ["name", "base_url", "api_key", "enabled"]
        labels = SERVICE_LABELS
        help_texts = {"api_key": "Deixe em branco para manter a chave salva."}
        widgets = {"api_key": SecretInput()}


class ProxyForm(Styled, KeepSecretMixin, forms.ModelForm):
    secret_field = "password"
    address_fields = ("scheme", "host", "port", "username")
    moved_message = "Informe a senha de novo ao mudar protocolo, host, porta ou usuário."
    country = forms.CharField(label="País (ISO, 2 letras)", required=False, max_length=10)
    clear_password = forms.BooleanField(label="Remover a senha salva", required=False)

    class Meta:
        model = Proxy
        fields = [
            "external_id",
            "type",
            "scheme",
            "host",
            "port",
            "username",
            "password",
            "country",
            "provider",
            "max_sessions",
            "enabled",
        ]
        labels = {
            "external_id": "ID externo",
            "type": "Tipo",
            "scheme": "Protocolo",
            "host": "Host",
            "port": "Porta",
            "username": "Usuário",
            "password": "Senha",
            "country": "País (ISO, 2 letras)",
            "provider": "Provedor",
            "max_sessions": "Máx. de sessões",
            "enabled": "Ativo",
        }
        help_texts = {"password": "Deixe em branco para manter a senha salva.", "country": ""}
        widgets = {"password": SecretInput()}

    def clean_country(self) -> str:
        value = (self.cleaned_data.get("country") or "").strip().upper()
        if value and not re.fullmatch(r"[A-Z]{2}", value):
            raise ValidationError("Use o código ISO de 2 letras, como BR.")
        return value


class ProxyImportForm(Styled, forms.Form):
    file = forms.FileField(label="Arquivo JSON ou CSV")

    def clean_file(self) -> Any:
        f = self.cleaned_data["file"]
        if not f.name.lower().endswith((".json", ".csv")):
            raise ValidationError("Envie um arquivo .json ou .csv.")
        if f.size > MAX_UPLOAD_BYTES:
            raise ValidationError("Arquivo grande demais (máximo 20 MB).")
        return f


# --- Estratégias ----------------------------------------------------------------------


class ListField(forms.CharField):
    """A comma-separated list shown in one input."""

    def __init__(self, *, upper: bool = False, **kwargs: Any) -> None:
        self.upper = upper
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        items = [v.strip() for v in re.split(r"[,\s]+", text) if v.strip()]
        return [v.upper() for v in items] if self.upper else items


class SiteConfigForm(Styled, forms.ModelForm):
    proxy_types = forms.MultipleChoiceField(
        label="Tipos de proxy permitidos",
        choices=[
            ("datacenter", "Datacenter"),
            ("residential", "Residencial"),
            ("mobile", "Móvel"),
            ("isp", "ISP"),
            ("browserbase", "Browserbase (gerenciado)"),
        ],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Nenhum marcado: herda do domínio pai, depois de * (em *: qualquer tipo).",
    )
    countries = ListField(
        label="Países",
        upper=True,
        help_text="Códigos ISO separados por vírgula; vazio: herda (em *: qualquer).",
    )
    blocked_proxies = ListField(
        label="Proxies bloqueados", help_text="IDs externos, separados por vírgula; vazio: herda."
    )
    providers = forms.MultipleChoiceField(
        label="Provedores de navegador aceitos",
        choices=[("local", "Local"), ("browserbase", "Browserbase")],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Nenhum marcado: herda (em *: qualquer provedor).",
    )
    selectors = forms.JSONField(
        label="Seletores CSS (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "class": "font-mono"}),
        help_text='Ex.: {"preco": ".price"}; vazio: herda.',
    )
    # Each setting left empty inherits from the parent domain's rule, then from `*`
    # (registry/site_rules.py), field by field.
    INHERIT_WHEN_EMPTY = ("proxy_types", "countries", "blocked_proxies", "providers", "selectors")

    class Meta:
        model = SiteConfig
        fields = [
            "domain",
            "proxy_types",
            "countries",
            "blocked_proxies",
            "max_sessions",
            "items_per_job",
            "job_timeout_s",
            "session_timeout_s",
            "engine",
            "providers",
            "selectors",
            "max_concurrent_sessions",
            "min_delay_ms",
            "max_requests_per_minute",
            "respect_robots",
            "user_agent",
            "headers",
            "enabled",
        ]
        labels = {
            "max_concurrent_sessions": "Máx. de sessões no domínio (todas as missões)",
            "min_delay_ms": "Pausa mínima entre requisições de uma sessão (ms)",
            "max_requests_per_minute": "Máx. de requisições por minuto no domínio",
            "respect_robots": "Respeitar robots.txt",
            "user_agent": "User-Agent",
            "domain": "Domínio",
            "max_sessions": "Máx. de sessões",
            "items_per_job": "Itens por job",
            "job_timeout_s": "Timeout do job (s)",
            "session_timeout_s": "Timeout da sessão (s)",
            "engine": "Motor",
            "enabled": "Ativa",
        }
        help_texts = {
            "domain": "Use * para a estratégia padrão.",
            "max_concurrent_sessions": "Vazio: herda do domínio pai, depois de *.",
            "min_delay_ms": "Vazio: herda do domínio pai, depois de *.",
            "max_requests_per_minute": "Vazio: herda; sem valor em lugar nenhum, sem limite.",
            "respect_robots": "Desconhecido: herda (padrão: sim).",
            "user_agent": "Vazio: herda.",
            "max_sessions": "Por missão. Vazio: herda do domínio pai, depois de *.",
            "items_per_job": "Vazio: herda.",
            "job_timeout_s": "Vazio: herda.",
            "session_timeout_s": "Vazio: herda.",
            "engine": "Vazio: herda.",
        }
        error_messages = {"domain": {"unique": "Já existe uma estratégia para este domínio."}}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in self.INHERIT_WHEN_EMPTY:
            if name in data and not data[name]:
                data[name] = None
        return data

    def clean_countries(self) -> list[str]:
        values: list[str] = self.cleaned_data.get("countries") or []
        bad = [v for v in values if not re.fullmatch(r"[A-Z]{2}", v)]
        if bad:
            raise ValidationError(f"Códigos de país inválidos: {', '.join(bad)}.")
        return values

    def clean_headers(self) -> dict[str, str] | None:
        try:
            return site_rules.clean_headers(self.cleaned_data.get("headers"))
        except ValueError as exc:
            raise ValidationError(f"Cabeçalhos inválidos: {exc}") from None

    def clean_selectors(self) -> dict[str, Any]:
        value = self.cleaned_data.get("selectors") or {}
        if not isinstance(value, dict):
            raise ValidationError('Informe um objeto JSON, como {"preco": ".price"}.')
        return value
