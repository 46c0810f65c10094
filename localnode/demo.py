"""A small shop to scrape: 300 product pages, an index, slow pages and pages that block
or fail, so a mission can run end to end on one machine without touching the Internet.

- `/local/demo/` lists the catalogue; `/local/demo/p/<n>/` is product n (1..300).
- every 37th product answers after 1-2 s; every 97th answers 429, every 89th 403.
- `/local/demo/status/<code>/` answers that status; `/local/demo/captcha/` a challenge.
- `/robots.txt` disallows `/local/demo/privado/` (products 1..300 again, "private"):
  a worker that honours robots.txt never requests them. `ROBOTS_CRAWL_DELAY` adds a
  `Crawl-delay` line. Every demo request is counted in `HITS` (path, monotonic time).
- `/local/demo/hold/<token>/?s=10` answers after `s` seconds (at most 60) or as soon as
  `release(token)` is called in this process, whichever is first: a page that keeps a
  job running for exactly as long as a test needs.
"""

from __future__ import annotations

import json
import threading
import time

from django.http import HttpRequest, HttpResponse
from django.utils.html import escape

from localnode import engines

CATALOGUE_SIZE = 300
SLOW_EVERY = 37
THROTTLED_EVERY = 97
FORBIDDEN_EVERY = 89
_CATEGORIES = ["Ferramentas", "Cozinha", "Jardim", "Escritório", "Esporte", "Brinquedos"]
_ADJECTIVES = ["Compacto", "Profissional", "Clássico", "Premium", "Econômico", "Turbo"]
_NOUNS = ["Liquidificador", "Furadeira", "Cafeteira", "Mochila", "Luminária", "Bicicleta"]


HOLD_DEFAULT_S = 10.0
HOLD_MAX_S = 60.0
_hold = threading.Condition()
_released: set[str] = set()


PRIVATE_PREFIX = "/local/demo/privado/"
ROBOTS_CRAWL_DELAY: float | None = None
# (path, time.monotonic()) of every request the demo answered, for tests and the demo.
HITS: list[tuple[str, float]] = []
_hits_lock = threading.Lock()


def _count(request: HttpRequest) -> None:
    with _hits_lock:
        HITS.append((request.path, time.monotonic()))


def hits(prefix: str = "") -> list[float]:
    """Times of the requests whose path starts with `prefix`."""
    with _hits_lock:
        return [t for path, t in HITS if path.startswith(prefix)]


def robots_txt(request: HttpRequest) -> HttpResponse:
    _count(request)
    lines = ["User-agent: *", f"Disallow: {PRIVATE_PREFIX}"]
    if ROBOTS_CRAWL_DELAY:
        lines.append(f"Crawl-delay: {ROBOTS_CRAWL_DELAY:g}")
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8")


def private_urls(base_url: str, n: int) -> list[str]:
    """`n` demo URLs robots.txt disallows."""
    base = base_url.rstrip("/")
    return [f"{base}{PRIVATE_PREFIX}{i % CATALOGUE_SIZE + 1}/" for i in range(n)]


def engine() -> tuple[str, str]:
    """The engine the demo site should run with here, and why not the browser: the
    browser when the built-in worker can start Chromium (a blocked page then keeps a
    screenshot of the block), HTTP otherwise."""
    reason = engines.browser_unavailable_reason()
    return ("http", reason) if reason else ("browser", "")


def release(token: str) -> None:
    """Let held pages answer: `token` itself and every token that starts with `token-`."""
    with _hold:
        _released.add(token)
        _hold.notify_all()


def _is_released(token: str) -> bool:
    return any(token == r or token.startswith(f"{r}-") for r in _released)


def demo_urls(base_url: str, n: int) -> list[str]:
    """`n` distinct demo URLs (products 1..300, then again with `?r=` to stay unique)."""
    base = base_url.rstrip("/")
    urls = []
    for i in range(n):
        number = i % CATALOGUE_SIZE + 1
        round_ = i // CATALOGUE_SIZE
        suffix = f"?r={round_}" if round_ else ""
        urls.append(f"{base}/local/demo/p/{number}/{suffix}")
    return urls


def product(n: int) -> dict[str, str | int]:
    name = f"{_NOUNS[n % len(_NOUNS)]} {_ADJECTIVES[(n // 6) % len(_ADJECTIVES)]} {n}"
    cents = 990 + (n * 7919) % 150_000
    reais = f"{cents // 100:,}".replace(",", ".")
    return {
        "number": n,
        "name": name,
        "category": _CATEGORIES[n % len(_CATEGORIES)],
        "price": f"R$ {reais},{cents % 100:02d}",
        "price_value": f"{cents / 100:.2f}",
        "sku": f"DEMO-{n:05d}",
    }


def _page(title: str, body: str, *, head: str = "", status: int = 200) -> HttpResponse:
    html = (
        '<!doctype html>\n<html lang="pt-BR"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>{head}</head><body>{body}</body></html>"
    )
    return HttpResponse(html, status=status, content_type="text/html; charset=utf-8")


def index(request: HttpRequest) -> HttpResponse:
    links = "".join(
        f'<li><a href="p/{n}/">{escape(product(n)["name"])}</a></li>'
        for n in range(1, CATALOGUE_SIZE + 1)
    )
    return _page(
        "Loja Demo — catálogo",
        f"<h1>Catálogo</h1><p>{CATALOGUE_SIZE} produtos.</p><ul>{links}</ul>",
        head='<meta name="description" content="Catálogo da loja de demonstração.">',
    )


def product_page(request: HttpRequest, n: int) -> HttpResponse:
    _count(request)
    if not 1 <= n <= CATALOGUE_SIZE:
        return _page("Não encontrado", "<h1>Produto não encontrado</h1>", status=404)
    if n % THROTTLED_EVERY == 0:
        response = _page("Muitas requisições", "<h1>Too Many Requests</h1>", status=429)
        response["Retry-After"] = "30"
        return response
    if n % FORBIDDEN_EVERY == 0:
        return _page("Bloqueado", "<h1>Access denied</h1>", status=403)
    if n % SLOW_EVERY == 0:
        time.sleep(1 + (n % 10) / 10)
    p = product(n)
    canonical = request.build_absolute_uri(f"/local/demo/p/{n}/")
    json_ld = json.dumps(
        {
            "@context": "https://schema.org",
            "@type": "Product",
            "name": p["name"],
            "sku": p["sku"],
            "category": p["category"],
            "offers": {
                "@type": "Offer",
                "priceCurrency": "BRL",
                "price": p["price_value"],
                "availability": "https://schema.org/InStock",
            },
        },
        ensure_ascii=False,
    )
    related = "".join(
        f'<li><a href="../{m}/">{escape(product(m)["name"])}</a></li>'
        for m in ((n + k - 1) % CATALOGUE_SIZE + 1 for k in (1, 2, 3, 5, 8))
    )
    body = (
        f'<nav><a href="../../">Catálogo</a> &rsaquo; <span class="category">{escape(p["category"])}</span></nav>'
        f"<main><h1>{escape(p['name'])}</h1>"
        f'<p class="price">{escape(p["price"])}</p>'
        f'<p class="sku">{escape(p["sku"])}</p>'
        f'<div class="description"><p>{escape(p["name"])} da linha {escape(p["category"])}: '
        "durável, garantia de 12 meses e entrega para todo o Brasil.</p></div>"
        f"<h2>Relacionados</h2><ul>{related}</ul></main>"
    )
    head = (
        f'<meta name="description" content="Compre {escape(p["name"])} por {escape(p["price"])}.">'
        f'<link rel="canonical" href="{escape(canonical)}">'
        f'<script type="application/ld+json">{json_ld}</script>'
    )
    return _page(f"{p['name']} | Loja Demo", body, head=head)


def hold_page(request: HttpRequest, token: str) -> HttpResponse:
    try:
        seconds = min(float(request.GET.get("s", HOLD_DEFAULT_S)), HOLD_MAX_S)
    except ValueError:
        seconds = HOLD_DEFAULT_S
    with _hold:
        _hold.wait_for(lambda: _is_released(token), timeout=max(seconds, 0.0))
    return product_page(request, 1)


def status_page(request: HttpRequest, code: int) -> HttpResponse:
    if not 200 <= code <= 599:
        code = 400
    return _page(f"HTTP {code}", f"<h1>HTTP {code}</h1>", status=code)


def captcha(request: HttpRequest) -> HttpResponse:
    return _page(
        "Verificação",
        '<h1>Confirme que você é humano</h1><div class="g-recaptcha" data-sitekey="demo"></div>',
    )
