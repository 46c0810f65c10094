"""What the local worker extracts from a page. Pure: HTML and selectors in, a dict out."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urljoin

from selectolax.lexbor import LexborHTMLParser as HTMLParser
from selectolax.lexbor import LexborNode as Node


class ParseError(Exception):
    """The body is not HTML we can read (empty, binary, or the parser gave up)."""


def _text(node: Node | None) -> str | None:
    if node is None:
        return None
    value = node.text(separator=" ", strip=True)
    return " ".join(value.split()) if value else ""


def _json_ld(tree: HTMLParser) -> list[Any]:
    blocks: list[Any] = []
    for node in tree.css('script[type="application/ld+json"]'):
        raw = (node.text(deep=True) or "").strip()
        if not raw:
            continue
        try:
            blocks.append(json.loads(raw))
        except ValueError:
            continue  # a broken block on the page is not our failure
    return blocks


def select_fields(tree: HTMLParser, selectors: dict[str, str]) -> dict[str, str | None]:
    """Text of the first match of each CSS selector (None when nothing matches or the
    selector itself is invalid)."""
    fields: dict[str, str | None] = {}
    for name, selector in selectors.items():
        if not isinstance(selector, str) or not selector.strip():
            fields[name] = None
            continue
        try:
            fields[name] = _text(tree.css_first(selector))
        except Exception:  # selectolax raises plain exceptions on bad selectors
            fields[name] = None
    return fields


def extract(html: str, url: str, selectors: dict[str, str] | None = None) -> dict[str, Any]:
    if not html or not html.strip() or "\x00" in html:
        raise ParseError("empty or binary body")
    try:
        tree = HTMLParser(html)
    except Exception as exc:
        raise ParseError(str(exc)) from exc
    if tree.root is None:
        raise ParseError("no document element")

    canonical = tree.css_first('link[rel="canonical"]')
    canonical_href = canonical.attributes.get("href") if canonical is not None else None
    description = tree.css_first('meta[name="description"]')
    html_node = tree.css_first("html")
    json_ld = _json_ld(tree)
    fields = select_fields(tree, selectors or {})
    # Text length counts what a reader sees, not scripts or styles.
    tree.strip_tags(["script", "style", "noscript", "template"], recursive=True)
    body = tree.body
    return {
        "title": _text(tree.css_first("title")),
        "description": (description.attributes.get("content") or "").strip() or None
        if description is not None
        else None,
        "canonical_url": urljoin(url, canonical_href.strip()) if canonical_href else None,
        "h1": [t for t in (_text(n) for n in tree.css("h1")) if t],
        "links": len(tree.css("a[href]")),
        "text_length": len(_text(body) or "") if body is not None else 0,
        "language": (html_node.attributes.get("lang") or "").strip() or None
        if html_node is not None
        else None,
        "json_ld": json_ld,
        "fields": fields,
    }
