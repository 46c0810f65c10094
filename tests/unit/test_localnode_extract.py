"""localnode.extract on small HTML strings."""

from __future__ import annotations

import pytest

from localnode.extract import ParseError, extract

PAGE = """<!doctype html>
<html lang="pt-BR"><head>
<title>  Furadeira   Turbo | Loja </title>
<meta name="description" content=" Compre já. ">
<link rel="canonical" href="/p/7/">
<script type="application/ld+json">{"@type": "Product", "name": "Furadeira"}</script>
<script type="application/ld+json">{broken json</script>
<script type="application/ld+json">[{"@type": "BreadcrumbList"}]</script>
</head><body>
<h1>Furadeira Turbo</h1><h1> </h1><h1>Outra</h1>
<p class="price">R$ 10,00</p><p class="price">R$ 99,00</p>
<a href="/a">a</a><a href="/b">b</a><a name="no-href">c</a>
<script>var hidden = "not counted as text";</script>
</body></html>"""


def test_it_extracts_the_page_basics() -> None:
    data = extract(PAGE, "https://loja.example/p/7?utm=x")
    assert data["title"] == "Furadeira Turbo | Loja"
    assert data["description"] == "Compre já."
    assert data["canonical_url"] == "https://loja.example/p/7/"
    assert data["h1"] == ["Furadeira Turbo", "Outra"]
    assert data["links"] == 2
    assert data["language"] == "pt-BR"
    assert data["fields"] == {}


def test_json_ld_blocks_are_parsed_and_broken_ones_skipped() -> None:
    assert extract(PAGE, "https://loja.example/")["json_ld"] == [
        {"@type": "Product", "name": "Furadeira"},
        [{"@type": "BreadcrumbList"}],
    ]


def test_selectors_give_the_text_of_the_first_match_or_none() -> None:
    data = extract(
        PAGE,
        "https://loja.example/",
        {"price": ".price", "name": "h1", "stock": ".stock", "broken": "[[", "empty": ""},
    )
    assert data["fields"] == {
        "price": "R$ 10,00",
        "name": "Furadeira Turbo",
        "stock": None,
        "broken": None,
        "empty": None,
    }


def test_text_length_ignores_scripts() -> None:
    data = extract(PAGE, "https://loja.example/")
    assert data["text_length"] == len("Furadeira Turbo Outra R$ 10,00 R$ 99,00 a b c")


def test_a_page_without_head_fields_gives_nones() -> None:
    data = extract("<p>oi</p>", "https://loja.example/")
    assert data["title"] is None and data["description"] is None
    assert data["canonical_url"] is None and data["language"] is None
    assert data["h1"] == [] and data["json_ld"] == [] and data["text_length"] == 2


@pytest.mark.parametrize("body", ["", "   \n", "\x89PNG\r\n\x1a\n\x00\x00"])
def test_empty_or_binary_bodies_are_parse_errors(body: str) -> None:
    with pytest.raises(ParseError):
        extract(body, "https://loja.example/")
