"""The demo shop at /local/demo/ (no database, no auth)."""

from __future__ import annotations

import threading

import pytest
from django.test import Client

from localnode import demo
from localnode.demo import demo_urls
from localnode.extract import extract

pytestmark = [pytest.mark.urls("localnode.root_urls")]


def test_demo_urls_are_distinct_and_wrap_past_the_catalogue() -> None:
    urls = demo_urls("http://127.0.0.1:8000/", 302)
    assert len(set(urls)) == 302
    assert urls[0] == "http://127.0.0.1:8000/local/demo/p/1/"
    assert urls[300] == "http://127.0.0.1:8000/local/demo/p/1/?r=1"


def test_the_index_lists_the_whole_catalogue() -> None:
    response = Client().get("/local/demo/")
    assert response.status_code == 200
    assert extract(response.content.decode(), "http://t/local/demo/")["links"] == 300


def test_a_product_page_has_price_json_ld_and_canonical() -> None:
    response = Client().get("/local/demo/p/5/")
    data = extract(
        response.content.decode(), "http://testserver/local/demo/p/5/", {"price": ".price"}
    )
    assert data["fields"]["price"] == demo.product(5)["price"]
    assert data["json_ld"][0]["offers"]["priceCurrency"] == "BRL"
    assert data["canonical_url"] == "http://testserver/local/demo/p/5/"
    assert data["h1"] == [demo.product(5)["name"]]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/local/demo/p/97/", 429),
        ("/local/demo/p/194/", 429),
        ("/local/demo/p/89/", 403),
        ("/local/demo/p/301/", 404),
        ("/local/demo/p/0/", 404),
        ("/local/demo/status/404/", 404),
        ("/local/demo/status/503/", 503),
        ("/local/demo/captcha/", 200),
    ],
)
def test_some_pages_fail_or_block(path: str, status: int) -> None:
    assert Client().get(path).status_code == status


def test_a_held_page_answers_once_released() -> None:
    # Released before or while it waits, the page answers long before its 20 s.
    answered: list[int] = []
    thread = threading.Thread(
        target=lambda: answered.append(Client().get("/local/demo/hold/t-held-1/?s=20").status_code)
    )
    thread.start()
    demo.release("t-held")
    thread.join(15)  # a page that waited its 20 s would not have answered yet
    assert answered == [200]
