"""The DiPro page's small HTML pieces: escaping, ages, signed changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dipro_fhir.ui.layout import age, change, e, query, segment, when

NOW = datetime(2026, 12, 6, 16, 0, tzinfo=UTC)


def test_values_and_urls_are_escaped() -> None:
    assert e('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"
    assert segment("a/b <c>") == "a%2Fb%20%3Cc%3E"
    assert query(page=2, pipeline="a&b", per_page=None) == "?page=2&amp;pipeline=a%26b"


def test_a_score_says_how_old_it_is() -> None:
    assert age(NOW - timedelta(minutes=20), NOW) == "20 min ago"
    assert age(NOW - timedelta(hours=14), NOW) == "14 h ago"
    assert age(NOW - timedelta(days=13), NOW) == "13 days ago"
    assert age(NOW + timedelta(hours=1), NOW) == "in the future"


def test_times_are_utc_to_the_minute_unless_they_have_seconds() -> None:
    local = datetime(2026, 12, 6, 3, 0, tzinfo=UTC).astimezone()  # whatever zone this is
    assert when(local) == "2026-12-06 03:00 UTC"
    assert when(datetime(2026, 12, 6, 3, 0, 9, tzinfo=UTC)) == "2026-12-06 03:00:09 UTC"
    assert when(None) == "—"


def test_changes_are_signed_and_say_when_there_is_no_baseline() -> None:
    assert change(9, 4) == "+5"
    assert change(1, 4) == "-3"
    assert change(0.5, 0.25, points=True) == "+25 pp"
    assert "±0" in change(3, 3)
    assert "no baseline" in change(3, None)
