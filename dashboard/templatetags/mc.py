"""Template helpers: pt-BR numbers and dates, state badges, icons."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django import template
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from dashboard import texts
from orchestrator.states import ItemStatus, MissionStatus, SessionStatus
from registry.models import HealthStatus, ProxyStatus, ProxyType

register = template.Library()

MISSION_BADGES = {
    MissionStatus.QUEUED: "badge-neutral",
    MissionStatus.ATRIBUIDO: "badge-sky",
    MissionStatus.EXTRAINDO: "badge-yellow",
    MissionStatus.ARMAZENANDO: "badge-violet",
    MissionStatus.FINALIZADO: "badge-green",
    MissionStatus.ERRO: "badge-red",
    MissionStatus.CANCELADO: "badge-neutral",
}
OTHER_BADGES = {
    ItemStatus.PENDING: "badge-neutral",
    ItemStatus.ASSIGNED: "badge-sky",
    ItemStatus.DONE: "badge-green",
    ItemStatus.FAILED: "badge-red",
    SessionStatus.REQUESTED: "badge-neutral",
    SessionStatus.CREATING: "badge-sky",
    SessionStatus.READY: "badge-green",
    SessionStatus.BUSY: "badge-yellow",
    SessionStatus.STUCK: "badge-orange",
    SessionStatus.DISCONNECTED: "badge-orange",
    SessionStatus.FAILED: "badge-red",
    SessionStatus.CLOSING: "badge-neutral",
    SessionStatus.CLOSED: "badge-neutral",
    HealthStatus.OK: "badge-green",
    HealthStatus.DEGRADED: "badge-orange",
    HealthStatus.OFFLINE: "badge-red",
    HealthStatus.UNKNOWN: "badge-neutral",
    ProxyStatus.AVAILABLE: "badge-green",
    ProxyStatus.COOLDOWN: "badge-yellow",
    ProxyStatus.BANNED: "badge-red",
    ProxyStatus.DISABLED: "badge-neutral",
}
LABELS: dict[str, str] = {
    **dict(MissionStatus.choices),
    **dict(ItemStatus.choices),
    **dict(SessionStatus.choices),
    **dict(HealthStatus.choices),
    **dict(ProxyStatus.choices),
}


@register.filter
def badge_class(status: str) -> str:
    return MISSION_BADGES.get(status) or OTHER_BADGES.get(status, "badge-neutral")  # type: ignore[call-overload]


@register.simple_tag
def status_badge(status: str, label: str = "") -> SafeString:
    """A state badge with a dot; live states pulse."""
    cls = badge_class(status)
    pulse = status in (MissionStatus.EXTRAINDO, MissionStatus.ATRIBUIDO, SessionStatus.BUSY)
    dot = '<span class="badge-dot{}"></span>'.format(" animate-pulse" if pulse else "")
    return format_html(
        '<span class="badge {}" data-status="{}">{}{}</span>',
        cls,
        status,
        mark_safe(dot),
        label or LABELS.get(status, status or "—"),
    )


@register.filter
def num(value: Any, decimals: int = 0) -> str:
    """1234.5 → '1.234,5' (pt-BR grouping, always)."""
    if value is None or value == "":
        return "—"
    try:
        return number_format(value, decimal_pos=int(decimals), force_grouping=True)
    except (TypeError, ValueError):
        return str(value)


@register.filter
def cfg(value: Any) -> str:
    """A config value for people: Sim/Não, decimal comma, no thousands grouping."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "Sim" if value else "Não"
    if isinstance(value, float):
        return f"{value:g}".replace(".", ",")
    return str(value)


@register.filter
def pct(value: Any, decimals: int = 1) -> str:
    if value is None:
        return "—"
    return f"{num(value, decimals)}%"


@register.filter
def dt_br(value: dt.datetime | None) -> str:
    """27/11/2026 14:05 in the site's time zone."""
    if not value:
        return "—"
    return timezone.localtime(value).strftime("%d/%m/%Y %H:%M")


@register.filter
def dt_br_s(value: dt.datetime | None) -> str:
    if not value:
        return "—"
    return timezone.localtime(value).strftime("%d/%m/%Y %H:%M:%S")


@register.filter
def ago(value: dt.datetime | None) -> str:
    """A short pt-BR age: 'agora', '5 min', '3 h', '2 d'."""
    if not value:
        return "—"
    seconds = int((timezone.now() - value).total_seconds())
    if seconds < 45:
        return "agora"
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


@register.filter
def parse_iso(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


@register.filter
def percent_of(part: Any, total: Any) -> float:
    try:
        return max(0.0, min(100.0, 100 * float(part) / float(total))) if total else 0.0
    except (TypeError, ValueError):
        return 0.0


@register.filter
def css_num(value: Any) -> str:
    """A float for inline CSS/SVG (always a dot decimal, whatever the locale)."""
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return "0"


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    try:
        return mapping.get(key)
    except AttributeError:
        return None


# Icons: strokes in the style of Lucide (ISC licence), drawn on a 24x24 grid.
ICONS = {
    "overview": '<rect x="3" y="3" width="7" height="9" rx="1"/><rect x="14" y="3" width="7" height="5" rx="1"/><rect x="14" y="12" width="7" height="9" rx="1"/><rect x="3" y="16" width="7" height="5" rx="1"/>',
    "missions": '<path d="M4.5 16.5c-1.5 1.26-2 5-2 5s3.74-.5 5-2c.71-.84.7-2.13-.09-2.91a2.18 2.18 0 0 0-2.91-.09z"/><path d="m12 15-3-3a22 22 0 0 1 2-3.95A12.88 12.88 0 0 1 22 2c0 2.72-.78 7.5-6 11a22.35 22.35 0 0 1-4 2z"/><path d="M9 12H4s.55-3.03 2-4c1.62-1.08 5 0 5 0"/><path d="M12 15v5s3.03-.55 4-2c1.08-1.62 0-5 0-5"/>',
    "execution": '<path d="M22 12h-4l-3 9L9 3l-3 9H2"/>',
    "resources": '<rect x="2" y="2" width="20" height="8" rx="2"/><rect x="2" y="14" width="20" height="8" rx="2"/><line x1="6" x2="6.01" y1="6" y2="6"/><line x1="6" x2="6.01" y1="18" y2="18"/>',
    "strategies": '<circle cx="6" cy="19" r="3"/><path d="M9 19h8.5a3.5 3.5 0 0 0 0-7h-11a3.5 3.5 0 0 1 0-7H15"/><circle cx="18" cy="5" r="3"/>',
    "settings": '<path d="M12.22 2h-.44a2 2 0 0 0-2 2v.18a2 2 0 0 1-1 1.73l-.43.25a2 2 0 0 1-2 0l-.15-.08a2 2 0 0 0-2.73.73l-.22.38a2 2 0 0 0 .73 2.73l.15.1a2 2 0 0 1 1 1.72v.51a2 2 0 0 1-1 1.74l-.15.09a2 2 0 0 0-.73 2.73l.22.38a2 2 0 0 0 2.73.73l.15-.08a2 2 0 0 1 2 0l.43.25a2 2 0 0 1 1 1.73V20a2 2 0 0 0 2 2h.44a2 2 0 0 0 2-2v-.18a2 2 0 0 1 1-1.73l.43-.25a2 2 0 0 1 2 0l.15.08a2 2 0 0 0 2.73-.73l.22-.39a2 2 0 0 0-.73-2.73l-.15-.08a2 2 0 0 1-1-1.74v-.5a2 2 0 0 1 1-1.74l.15-.09a2 2 0 0 0 .73-2.73l-.22-.38a2 2 0 0 0-2.73-.73l-.15.08a2 2 0 0 1-2 0l-.43-.25a2 2 0 0 1-1-1.73V4a2 2 0 0 0-2-2z"/><circle cx="12" cy="12" r="3"/>',
    "sun": '<circle cx="12" cy="12" r="4"/><path d="M12 2v2"/><path d="M12 20v2"/><path d="m4.93 4.93 1.41 1.41"/><path d="m17.66 17.66 1.41 1.41"/><path d="M2 12h2"/><path d="M20 12h2"/><path d="m6.34 17.66-1.41 1.41"/><path d="m19.07 4.93-1.41 1.41"/>',
    "moon": '<path d="M12 3a6 6 0 0 0 9 9 9 9 0 1 1-9-9Z"/>',
    "chevron-left": '<path d="m15 18-6-6 6-6"/>',
    "chevron-right": '<path d="m9 18 6-6-6-6"/>',
    "menu": '<line x1="4" x2="20" y1="12" y2="12"/><line x1="4" x2="20" y1="6" y2="6"/><line x1="4" x2="20" y1="18" y2="18"/>',
    "logout": '<path d="M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4"/><polyline points="16 17 21 12 16 7"/><line x1="21" x2="9" y1="12" y2="12"/>',
    "x": '<path d="M18 6 6 18"/><path d="m6 6 12 12"/>',
    "check": '<path d="M20 6 9 17l-5-5"/>',
    "plus": '<path d="M5 12h14"/><path d="M12 5v14"/>',
    "refresh": '<path d="M3 12a9 9 0 0 1 9-9 9.75 9.75 0 0 1 6.74 2.74L21 8"/><path d="M21 3v5h-5"/><path d="M21 12a9 9 0 0 1-9 9 9.75 9.75 0 0 1-6.74-2.74L3 16"/><path d="M8 16H3v5"/>',
    "download": '<path d="M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4"/><polyline points="7 10 12 15 17 10"/><line x1="12" x2="12" y1="15" y2="3"/>',
    "upload": '<path d="M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4"/><polyline points="17 8 12 3 7 8"/><line x1="12" x2="12" y1="3" y2="15"/>',
    "alert": '<path d="m21.73 18-8-14a2 2 0 0 0-3.48 0l-8 14A2 2 0 0 0 4 21h16a2 2 0 0 0 1.73-3"/><path d="M12 9v4"/><path d="M12 17h.01"/>',
    "pause": '<rect x="14" y="4" width="4" height="16" rx="1"/><rect x="6" y="4" width="4" height="16" rx="1"/>',
    "play": '<polygon points="6 3 20 12 6 21 6 3"/>',
    "clock": '<circle cx="12" cy="12" r="10"/><polyline points="12 6 12 12 16 14"/>',
    "zap": '<path d="M4 14a1 1 0 0 1-.78-1.63l9.9-10.2a.5.5 0 0 1 .86.46l-1.92 6.02A1 1 0 0 0 13 10h7a1 1 0 0 1 .78 1.63l-9.9 10.2a.5.5 0 0 1-.86-.46l1.92-6.02A1 1 0 0 0 11 14z"/>',
    "trash": '<path d="M3 6h18"/><path d="M19 6v14c0 1-1 2-2 2H7c-1 0-2-1-2-2V6"/><path d="M8 6V4c0-1 1-2 2-2h4c1 0 2 1 2 2v2"/>',
    "edit": '<path d="M21.17 6.81a1 1 0 0 0-3.99-3.99L3.84 16.17a2 2 0 0 0-.5.83l-1.32 4.35a.5.5 0 0 0 .62.62l4.35-1.32a2 2 0 0 0 .83-.5z"/>',
    "plug": '<path d="M12 22v-5"/><path d="M9 8V2"/><path d="M15 8V2"/><path d="M18 8v5a4 4 0 0 1-4 4h-4a4 4 0 0 1-4-4V8Z"/>',
    "search": '<circle cx="11" cy="11" r="8"/><path d="m21 21-4.3-4.3"/>',
    "inbox": '<polyline points="22 12 16 12 14 15 10 15 8 12 2 12"/><path d="M5.45 5.11 2 12v6a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2v-6l-3.45-6.89A2 2 0 0 0 16.76 4H7.24a2 2 0 0 0-1.79 1.11z"/>',
    "cpu": '<rect width="16" height="16" x="4" y="4" rx="2"/><rect width="6" height="6" x="9" y="9" rx="1"/><path d="M15 2v2"/><path d="M15 20v2"/><path d="M2 15h2"/><path d="M2 9h2"/><path d="M20 15h2"/><path d="M20 9h2"/><path d="M9 2v2"/><path d="M9 20v2"/>',
    "globe": '<circle cx="12" cy="12" r="10"/><path d="M12 2a14.5 14.5 0 0 0 0 20 14.5 14.5 0 0 0 0-20"/><path d="M2 12h20"/>',
    "layers": '<path d="m12.83 2.18a2 2 0 0 0-1.66 0L2.6 6.08a1 1 0 0 0 0 1.83l8.58 3.91a2 2 0 0 0 1.66 0l8.58-3.9a1 1 0 0 0 0-1.83Z"/><path d="m22 17.65-9.17 4.16a2 2 0 0 1-1.66 0L2 17.65"/><path d="m22 12.65-9.17 4.16a2 2 0 0 1-1.66 0L2 12.65"/>',
    "webhook": '<path d="M18 16.98h-5.99c-1.1 0-1.95.94-2.48 1.9A4 4 0 0 1 2 17c.01-.7.2-1.4.57-2"/><path d="m6 17 3.13-5.78c.53-.97.1-2.18-.5-3.1a4 4 0 1 1 6.89-4.06"/><path d="m12 6 3.13 5.73C15.66 12.7 16.9 13 18 13a4 4 0 0 1 0 8"/>',
    "activity": '<path d="M22 12h-2.48a2 2 0 0 0-1.93 1.46l-2.35 8.36a.25.25 0 0 1-.48 0L9.24 2.18a.25.25 0 0 0-.48 0l-2.35 8.36A2 2 0 0 1 4.49 12H2"/>',
}


@register.simple_tag
def icon(name: str, size: int = 18, cls: str = "") -> SafeString:
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 24 24" '
        'fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" '
        'stroke-linejoin="round" class="shrink-0 {}" aria-hidden="true">{}</svg>',
        size,
        size,
        cls,
        mark_safe(ICONS.get(name, "")),
    )


NAV = [
    ("dashboard:overview", "/", "Visão geral", "overview"),
    ("dashboard:missions", "/missoes/", "Missões", "missions"),
    ("dashboard:execution", "/execucao/", "Execução", "execution"),
    ("dashboard:resources_home", "/recursos/", "Recursos", "resources"),
    ("dashboard:strategies", "/estrategias/", "Estratégias", "strategies"),
    ("dashboard:recurring", "/recorrentes/", "Missões recorrentes", "clock"),
    ("dashboard:webhooks", "/webhooks/", "Webhooks", "webhook"),
    ("dashboard:settings", "/configuracoes/", "Configurações", "settings"),
]


@register.simple_tag
def nav_items(path: str) -> list[dict[str, Any]]:
    items = []
    for name, prefix, label, ic in NAV:
        active = path == "/" if prefix == "/" else path.startswith(prefix)
        items.append({"url": prefix, "name": name, "label": label, "icon": ic, "active": active})
    return items


@register.simple_tag
def error_label(code: str, cls: str = "") -> SafeString:
    """An error code as a pt-BR sentence with the code as secondary (monospace) text."""
    if not code:
        return mark_safe('<span class="text-muted-foreground">—</span>')
    return format_html(
        '<span class="error-label {}" data-error-code="{}"><span class="font-medium">{}</span>'
        ' <span class="mono text-[11px]">{}</span></span>',
        cls,
        code,
        texts.error_text(code),
        code,
    )


@register.filter
def error_text(code: str) -> str:
    return texts.error_text(code or "")


@register.filter
def phase(value: str) -> str:
    return texts.phase_text(value) if value else "—"


@register.filter
def duration_ms(value: Any) -> str:
    try:
        return texts.duration_text(float(value))
    except (TypeError, ValueError):
        return "—"


@register.filter
def cron_text(value: str) -> str:
    return texts.cron_text(value or "")


@register.filter
def tick_text(value: Any) -> str:
    return texts.tick_text(value)


@register.filter
def error_line(value: str) -> str:
    return texts.error_line(value or "")


PROXY_TYPES: dict[str, str] = dict(ProxyType.choices)


@register.filter
def proxy_type(value: str) -> str:
    """`residential` → "Residencial": the type as the operator reads it."""
    return PROXY_TYPES.get(value, value) if value else "—"


@register.simple_tag
def human_error(raw: str, compact: bool = True) -> SafeString:
    """A raw error (a service's last_error, an event's text) as a pt-BR sentence, with
    the raw code and message beneath as secondary text (truncated when `compact`)."""
    found = texts.human_error(raw or "")
    if not found.text:
        return mark_safe('<span class="text-muted-foreground">—</span>')
    if not found.detail:
        return format_html('<span class="human-error">{}</span>', found.text)
    detail_cls = "block truncate" if compact else "block break-words"
    return format_html(
        '<span class="human-error" title="{}"><span class="font-medium">{}</span>'
        '<span class="mono {} text-[11px] opacity-80" data-raw-error>{}</span></span>',
        found.detail,
        found.text,
        detail_cls,
        found.detail,
    )


@register.filter
def human_text(raw: str) -> str:
    """Only the pt-BR sentence of `human_error`, for one-line places."""
    return texts.human_error(raw or "").text


_INLINE_CSS: dict[str, str] = {}


def _read_static(path: str) -> tuple[str, str]:
    """The text of a static file as served and the URL of its folder: the hashed copy
    collectstatic made (manifest storage), else the source file (DEBUG, tests)."""
    from django.contrib.staticfiles import finders
    from django.contrib.staticfiles.storage import staticfiles_storage
    from django.templatetags.static import static

    url = static(path)
    stored_name = getattr(staticfiles_storage, "stored_name", None)
    if stored_name is not None:
        with staticfiles_storage.open(stored_name(path)) as f:
            return f.read().decode(), url.rsplit("/", 1)[0]
    found = finders.find(path)
    if not isinstance(found, str):
        raise FileNotFoundError(path)
    with open(found, encoding="utf-8") as f:
        return f.read(), url.rsplit("/", 1)[0]


@register.simple_tag
def inline_css(path: str) -> SafeString:
    """A stylesheet's text for a <style> block, its relative url()s made absolute.
    Read once per process (a deploy restarts it)."""
    from django.conf import settings

    css = _INLINE_CSS.get(path)
    if css is None:
        text, folder = _read_static(path)
        parent = folder.rsplit("/", 1)[0]
        css = re.sub(r"url\((['\"]?)\.\./", lambda m: f"url({m.group(1)}{parent}/", text)
        css = css.replace("</", "<\\/")  # never closes the <style> element early
        if not settings.DEBUG:
            _INLINE_CSS[path] = css
    return mark_safe(css)  # our own compiled stylesheet
