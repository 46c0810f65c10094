"""Parsing and validation of proxies.json / CSV / proxy-strategies.json (pure), then
the two management commands that apply them (database)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from registry import importers
from registry.importers import ProxyRow
from registry.models import Proxy, SiteConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def only_row(entry: dict[str, Any]) -> ProxyRow:
    parsed = importers.parse_proxies([entry])
    assert parsed.errors == []
    return parsed.rows[0]


def only_errors(entry: Any) -> dict[str, str]:
    parsed = importers.parse_proxies([entry])
    assert parsed.rows == []
    return parsed.errors[0].errors


# -- proxies ------------------------------------------------------------------------


def test_it_parses_every_variant_of_the_example_file() -> None:
    parsed = importers.parse_proxies(json.loads((EXAMPLES / "proxies.json").read_text()))

    assert parsed.errors == []
    rows = {r.external_id: r for r in parsed.rows}
    assert rows["px-br-res-01"] == ProxyRow(
        external_id="px-br-res-01",
        type="residential",
        scheme="http",
        host="203.0.113.10",
        port=8000,
        username="cliente-br",
        password="troque-me",
        country="BR",
        provider="provedor-a",
    )
    assert rows["px-br-res-02"].country == "BR"  # geo object with a city
    assert rows["px-us-dc-01"].external_id == "px-us-dc-01"  # _id
    assert (rows["px-us-dc-01"].scheme, rows["px-us-dc-01"].port) == ("http", 3128)
    assert (rows["px-us-dc-02"].scheme, rows["px-us-dc-02"].username) == ("socks5", "user")
    assert (rows["px-us-dc-02"].country, rows["px-us-dc-02"].max_sessions) == ("US", 4)
    assert rows["px-mx-mob-01"].enabled is False
    assert rows["px-br-res-01"].enabled is None  # absent: keep / default


@pytest.mark.parametrize(
    ("geo", "country"),
    [
        ("br", "BR"),
        ({"country": "us"}, "US"),
        ({"Country": "Mx"}, "MX"),
        ({"COUNTRY": "ca", "city": "Toronto"}, "CA"),
        (None, ""),
        ("", ""),
    ],
)
def test_it_reads_geo_in_any_shape_and_case(geo: Any, country: str) -> None:
    entry = {"id": "p", "type": "isp", "host": "h.example.com", "port": 1, "geo": geo}

    assert only_row(entry).country == country


def test_absent_geo_means_any_country() -> None:
    assert only_row({"id": "p", "type": "isp", "host": "h", "port": 1}).country == ""


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("http://198.51.100.7:3128", ("http", "198.51.100.7", 3128, "", "")),
        ("https://proxy.example.com", ("https", "proxy.example.com", 443, "", "")),
        ("socks5://u%40x:p%3Aw@10.0.0.1:1080", ("socks5", "10.0.0.1", 1080, "u@x", "p:w")),
        ("HTTP://[2001:db8::1]:8080", ("http", "2001:db8::1", 8080, "", "")),
    ],
)
def test_it_reads_server_urls(server: str, expected: tuple[Any, ...]) -> None:
    row = only_row({"id": "p", "type": "datacenter", "server": server})

    assert (row.scheme, row.host, row.port, row.username, row.password) == expected


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"type": "isp", "host": "h", "port": 1}, "id"),
        ({"id": "p", "host": "h", "port": 1}, "type"),
        ({"id": "p", "type": "satellite", "host": "h", "port": 1}, "type"),
        ({"id": "p", "type": "isp", "port": 1}, "host"),
        ({"id": "p", "type": "isp", "host": "h"}, "port"),
        ({"id": "p", "type": "isp", "host": "h", "port": 0}, "port"),
        ({"id": "p", "type": "isp", "host": "h", "port": 65536}, "port"),
        ({"id": "p", "type": "isp", "host": "h", "port": True}, "port"),
        ({"id": "p", "type": "isp", "host": "a b", "port": 1}, "host"),
        ({"id": "p", "type": "isp", "host": "h", "port": 1, "scheme": "ftp"}, "scheme"),
        ({"id": "p", "type": "isp", "server": "ftp://h:21"}, "server"),
        ({"id": "p", "type": "isp", "server": "http://h:99999"}, "server"),
        ({"id": "p", "type": "isp", "server": "http://:80"}, "server"),
        ({"id": "p", "type": "isp", "server": 5}, "server"),
        ({"id": "p", "type": "isp", "host": "h", "port": 1, "geo": "BRA"}, "geo"),
        ({"id": "p", "type": "isp", "host": "h", "port": 1, "geo": {"country": 1}}, "geo"),
        ({"id": "p", "type": "isp", "host": "h", "port": 1, "maxSessions": 0}, "maxSessions"),
        ({"id": "p", "type": "isp", "host": "h", "port": 1, "enabled": "talvez"}, "enabled"),
        ({"id": ["p"], "type": "isp", "host": "h", "port": 1}, "id"),
        ("not an object", "entry"),
    ],
)
def test_it_names_the_reason_of_a_bad_entry(entry: Any, field: str) -> None:
    assert field in only_errors(entry)


def test_it_reports_every_bad_field_of_an_entry_at_once() -> None:
    errors = only_errors({"id": "p", "type": "x", "host": "h", "port": 0, "geo": "XYZ"})

    assert set(errors) == {"type", "port", "geo"}


def test_it_reports_bad_entries_by_index_and_keeps_the_good_ones() -> None:
    good = {"id": "a", "type": "isp", "host": "h", "port": 1}
    parsed = importers.parse_proxies([good, {"id": "b"}, dict(good, id="c"), dict(good)])

    assert [r.external_id for r in parsed.rows] == ["a", "c"]
    assert [(e.index, e.key) for e in parsed.errors] == [(1, "b"), (3, "a")]
    assert parsed.errors[1].errors == {"id": "appears more than once."}
    assert "entry 1 (b): type:" in parsed.errors[0].describe()


def test_a_file_that_is_not_a_list_is_one_error() -> None:
    parsed = importers.parse_proxies({"proxies": []})

    assert parsed.rows == []
    assert "file" in parsed.errors[0].errors


def test_it_parses_csv_with_the_documented_header() -> None:
    text = (
        "\ufeffid,type,scheme,host,port,username,password,country,provider,max_sessions,enabled\n"
        "a,residential,socks5,10.0.0.1,1080,u,p,br,prov,2,no\n"
        "b,datacenter,,10.0.0.2,3128,,,,,,\n"
        "c,datacenter,,10.0.0.3,x,,,,,,\n"
    )

    parsed = importers.parse_proxies_csv(text)

    assert [r.external_id for r in parsed.rows] == ["a", "b"]
    a = parsed.rows[0]
    assert (a.scheme, a.country, a.max_sessions, a.enabled) == ("socks5", "BR", 2, False)
    assert parsed.rows[1].scheme == "http"
    assert [(e.index, e.errors) for e in parsed.errors] == [(2, {"port": "must be an integer."})]


def test_csv_accepts_a_server_column() -> None:
    parsed = importers.parse_proxies_csv("id,type,server\na,mobile,http://u:p@h:81\n")

    assert (parsed.rows[0].host, parsed.rows[0].port, parsed.rows[0].password) == ("h", 81, "p")


def test_csv_without_the_required_columns_is_one_error() -> None:
    parsed = importers.parse_proxies_csv("name,address\nx,y\n")

    assert parsed.rows == []
    assert "file" in parsed.errors[0].errors


# -- strategies ---------------------------------------------------------------------


def test_it_parses_the_example_strategies() -> None:
    parsed = importers.parse_strategies(
        json.loads((EXAMPLES / "proxy-strategies.json").read_text())
    )

    assert parsed.errors == []
    rows = {r.domain: r.values for r in parsed.rows}
    assert list(rows) == ["*", "loja-exemplo.com.br", "example.com"]
    assert rows["*"] == {
        "proxy_types": ["datacenter", "residential"],
        "countries": [],
        "blocked_proxies": [],
        "max_sessions": 4,
    }
    assert rows["loja-exemplo.com.br"] == {
        "proxy_types": ["mobile", "residential"],
        "countries": ["BR"],
        "blocked_proxies": ["px-br-res-02"],
        "max_sessions": 2,
        "items_per_job": 25,
    }
    assert rows["example.com"]["countries"] == ["CA", "US"]
    assert "max_sessions" not in rows["example.com"]  # absent: keep / default


def test_snake_case_keys_and_extras_are_accepted() -> None:
    parsed = importers.parse_strategies(
        {
            "domains": {
                "WWW.Shop.COM": {
                    "proxy_types": ["ISP"],
                    "countries": ["br"],
                    "engine": "browser",
                    "selectors": {"price": ".p"},
                    "jobTimeoutS": 30,
                    "enabled": False,
                }
            }
        }
    )

    assert parsed.errors == []
    row = parsed.rows[0]
    assert row.domain == "shop.com"
    assert row.values["proxy_types"] == ["isp"]
    assert (row.values["engine"], row.values["job_timeout_s"], row.values["enabled"]) == (
        "browser",
        30,
        False,
    )


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"proxyTypes": ["satellite"]}, "proxyTypes"),
        ({"proxyTypes": "residential,mobile"}, "proxyTypes"),
        ({"geo": "BRA"}, "geo"),
        ({"geo": 55}, "geo"),
        ({"blockedProxyIds": [1, 2]}, "blockedProxyIds"),
        ({"maxSessions": 0}, "maxSessions"),
        ({"itemsPerJob": "many"}, "itemsPerJob"),
        ({"engine": "curl"}, "engine"),
        ({"selectors": {"price": 1}}, "selectors"),
        ([], "entry"),
    ],
)
def test_it_names_the_reason_of_a_bad_strategy(entry: Any, field: str) -> None:
    parsed = importers.parse_strategies({"domains": {"ok.com": {}, "x.com": entry}})

    assert [r.domain for r in parsed.rows] == ["ok.com"]
    assert parsed.errors[0].index == 1
    assert parsed.errors[0].key == "x.com"
    assert field in parsed.errors[0].errors


def test_a_domain_given_with_and_without_www_is_a_duplicate() -> None:
    parsed = importers.parse_strategies({"domains": {"x.com": {}, "www.x.com": {}}})

    assert [e.index for e in parsed.errors] == [1]
    assert "domain" in parsed.errors[0].errors


@pytest.mark.parametrize("domain", ["http://x.com/", "a b.com", "-x.com", ""])
def test_a_bad_domain_is_reported(domain: str) -> None:
    parsed = importers.parse_strategies({"domains": {domain: {}}})

    assert "domain" in parsed.errors[0].errors


@pytest.mark.parametrize("data", [[], {"domains": []}, "x"])
def test_a_strategies_file_of_the_wrong_shape_is_one_error(data: Any) -> None:
    assert "file" in importers.parse_strategies(data).errors[0].errors


# -- commands (database) ------------------------------------------------------------


@pytest.mark.django_db
def test_import_proxies_command_imports_and_summarizes(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("import_proxies", str(EXAMPLES / "proxies.json"))
    call_command("import_proxies", str(EXAMPLES / "proxies.json"))

    out = capsys.readouterr().out
    assert "5 created, 0 updated" in out
    assert "0 created, 5 updated" in out
    assert Proxy.objects.count() == 5


@pytest.mark.django_db
def test_import_proxies_command_stops_on_bad_entries_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "proxies.json"
    entries = json.loads((EXAMPLES / "proxies.json").read_text())
    entries[2]["type"] = "satellite"
    path.write_text(json.dumps(entries))

    with pytest.raises(CommandError, match="1 invalid entries; nothing imported"):
        call_command("import_proxies", str(path))
    assert not Proxy.objects.exists()
    assert "entry 2 (px-us-dc-01): type:" in capsys.readouterr().err

    call_command("import_proxies", str(path), "--skip-invalid")
    assert Proxy.objects.count() == 4


@pytest.mark.django_db
def test_import_proxies_command_reports_progress_on_big_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ["id,type,host,port,country"]
    lines += [f"px-{n},datacenter,10.1.{n // 250}.{n % 250},3128,BR" for n in range(2500)]
    path = tmp_path / "proxies.csv"
    path.write_text("\n".join(lines))

    call_command("import_proxies", str(path))

    out = capsys.readouterr().out
    assert "1000/2500" in out
    assert "2000/2500" in out
    assert "2500 created" in out
    assert Proxy.objects.count() == 2500


@pytest.mark.django_db
def test_import_proxy_strategies_command(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("import_proxy_strategies", str(EXAMPLES / "proxy-strategies.json"))

    assert "3 created" in capsys.readouterr().out
    assert set(SiteConfig.objects.values_list("domain", flat=True)) == {
        "*",
        "loja-exemplo.com.br",
        "example.com",
    }


@pytest.mark.django_db
def test_commands_refuse_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[{")

    with pytest.raises(CommandError):
        call_command("import_proxies", str(tmp_path / "missing.json"))
    with pytest.raises(CommandError):
        call_command("import_proxies", str(tmp_path / "bad.json"))
    with pytest.raises(CommandError):
        call_command("import_proxy_strategies", str(tmp_path / "bad.json"))
