"""Known secrets are hidden from stored errors in any letter case and URL-encoded."""

from __future__ import annotations

from mission_control.logging import hide


def test_a_key_echoed_in_another_case_is_hidden() -> None:
    text = "401: key SK-Live-Abc/123 refused (sk-live-abc/123, SK-LIVE-ABC%2F123)"

    assert hide(text, ["sk-live-abc/123"]) == "401: key *** refused (***, ***)"


def test_short_or_empty_secrets_are_ignored() -> None:
    assert hide("ab cd", ["", "ab"]) == "ab cd"
