"""The ledger: entries, totals and the invariant read = used + dropped."""

import pytest

from usm_geo.intake.ledger import Ledger


def test_totals_and_invariant():
    ledger = Ledger()
    ledger.open_source("incidents", "inc.csv", read=10)
    ledger.add("incidents", [3, 7], "dropped", "null_island")
    ledger.add("incidents", [5], "kept", "duplicate", "same as row 4")
    ledger.add("incidents", [9], "changed", "lat_lon_swapped")
    ledger.note("incidents", "encoding", "read as cp1252")
    ledger.close_source("incidents", used=8)
    assert ledger.totals() == {"incidents": {"read": 10, "used": 8, "dropped": 2}}
    frame = ledger.to_frame()
    assert list(frame.columns) == ["source", "row", "status", "reason", "detail", "record_id", "events"]  # record_id, events appended (issue #18)
    assert frame["row"].tolist() == [0, 3, 5, 7, 9]  # sorted: file note first
    assert ledger.reason_counts()[("incidents", "dropped", "null_island")] == 2


def test_broken_invariant_is_a_bug_not_a_user_error():
    ledger = Ledger()
    ledger.open_source("s", "f.csv", read=3)
    ledger.add("s", [1], "dropped", "x")
    with pytest.raises(AssertionError, match="read 3 != used 1 \\+ dropped 1"):
        ledger.close_source("s", used=1)


def test_summary_lists_totals_and_top_reasons():
    ledger = Ledger()
    ledger.open_source("s", "f.csv", read=5)
    ledger.add("s", [1, 2], "dropped", "missing_coordinates")
    ledger.close_source("s", used=3)
    text = ledger.summary()
    assert "s: read 5, used 3, dropped 2" in text
    assert "2  s: missing_coordinates (dropped)" in text
