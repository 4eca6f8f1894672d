"""Fast paths of intake give exactly what the general paths give.

Each fast path keeps its general path as the reference: ``dates.FAST = False`` makes
:func:`usm_geo.intake.dates.parse_dates` read every value the general way (pandas ISO 8601, then
the local formats), and :func:`usm_geo.intake.records._record_groups_general` is the former
duplicate grouping (per-column factorize, pairwise re-factorize). The cases are the messy ones of
tests/robustness (day/month ambiguity, offsets, month-only dates, missing markers, impossible
calendar days, placeholders out of range) and random mixtures of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import shapely

from usm_geo.errors import DateError
from usm_geo.intake import dates as D
from usm_geo.intake import records as R
from usm_geo.intake.ledger import Ledger


def _parse(text: pd.Series, fast: bool, **kwargs):
    old = D.FAST
    D.FAST = fast
    try:
        p = D.parse_dates(text, timezone=kwargs.pop("timezone", "America/Chicago"), **kwargs)
        return p.values, p.missing, p.precision, p.formats
    except DateError as exc:
        return exc.message
    finally:
        D.FAST = old


def assert_same_dates(text: pd.Series, **kwargs) -> None:
    fast, general = _parse(text, True, **kwargs), _parse(text, False, **kwargs)
    if isinstance(general, str) or isinstance(fast, str):
        assert fast == general
        return
    assert fast[0].dtype == general[0].dtype == "datetime64[ns]"
    pd.testing.assert_series_equal(fast[0], general[0])
    np.testing.assert_array_equal(fast[1], general[1])
    assert fast[2:] == general[2:]
    assert list(fast[3]) == list(general[3])  # the order of the formats (the ledger note lists them)


CASES = {
    "plain": ["2021-05-01", "2021-05-02 14:30", "2021-05-03T14:30", "2021-05-04 14:30:59", "2021-05-05T00:00:00"],
    "impossible days and times": ["2021-02-30", "2020-02-29", "2100-02-29", "2000-02-29", "2021-13-01", "2021-00-10",
                                  "2021-05-00", "2021-05-01 24:00", "2021-05-01 23:60", "2021-05-01 23:59:60"],
    "out of range": ["0001-01-01", "9999-12-31", "1677-01-01", "1678-01-01", "2261-12-31 23:59:59", "2262-06-01"],
    "missing markers": ["", "NA", "n/a", "NULL", "none", "nan", "NaT", " ", "2021-05-01"],
    "spaces and words": [" 2021-05-01 ", "2021-05-01 ", "yesterday", "2021-5-1", "2021/05/01", "20210501", "2021-05-01x"],
    "mixed iso and day first": ["2021-05-01", "2021-05-02 14:30", "25/12/2021", "13/01/2022"],
    "ambiguous": ["2021-05-01", "03/04/2021", "03/04/2021"],
    "offsets": ["2021-05-01 10:00", "2021-05-01T10:00:00Z", "2021-05-01T10:00:00-05:00"],
    "uniform offset": ["2021-05-01T10:00:00+02:00", "2021-05-02T10:00:00+02:00"],
    "offset with plain dates": ["2021-05-01", "2021-05-02T00:00+01:00", "2021-05-03"],
    "fractions": ["2021-05-01 10:00:00.5", "2021-05-01 10:00:01"],
    "month only": ["2022-01", "2022-02", "2022-12"],
    "month only then days": ["2022-01"] * 3 + ["2022-01-05"],
    "first days": ["2022-01-01", "2022-02-01", "2022-03-01"],
    "day first local": ["01/05/2021 14:30", "02/05/2021", "13/05/2021 25:99", "14/05/2021 23:59:59"],
    "named months": ["Jan 2021", "2021-02-01", "March 2021"],
}


@pytest.mark.parametrize("values", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("kwargs", [{}, {"dayfirst": True}, {"dayfirst": False}, {"column": "month"}],
                         ids=["detect", "dayfirst", "monthfirst", "month-column"])
def test_dates_fast_path_equals_general_path(values, kwargs):
    assert_same_dates(pd.Series(values, dtype="str"), **kwargs)
    assert_same_dates(pd.Series(values, dtype=object), **kwargs)


def test_dates_fast_path_on_random_mixtures():
    # plain ISO values (valid and not) mixed with every other kind, in random order and proportions
    rng = np.random.default_rng(22)
    others = [v for k, vs in CASES.items() if k not in ("ambiguous",) for v in vs]
    for trial in range(40):
        n = int(rng.integers(1, 400))
        year = rng.integers(1990, 2030, n)
        month = rng.integers(0, 14, n)
        day = rng.integers(0, 32, n)
        hour = rng.integers(0, 25, n)
        plain = [f"{y:04d}-{m:02d}-{d:02d}" + (f" {h:02d}:{h % 60:02d}" if h % 3 else "")
                 for y, m, d, h in zip(year, month, day, hour)]
        mix = np.array(plain, dtype=object)
        swap = rng.random(n) < rng.choice([0.0, 0.05, 0.5])
        mix[swap] = rng.choice(np.array(others, dtype=object), swap.sum())
        text = pd.Series(mix, index=pd.RangeIndex(n) * 2 + 3)  # an index that is not 0…n-1
        assert_same_dates(text, dayfirst=True)
        assert_same_dates(text.astype("str"), dayfirst=bool(trial % 2))


def test_dates_fast_path_reads_nulls_the_general_way():
    text = pd.Series(pa.chunked_array([pa.array(["2021-05-01", None]), pa.array(["2021-05-03 10:00"])]),
                     dtype=pd.ArrowDtype(pa.string())).astype("str")
    assert_same_dates(text)


def test_plain_iso_values_are_what_pandas_reads():
    # the fast reader against pandas' ISO 8601 parser itself, value by value
    rng = np.random.default_rng(7)
    n = 5000
    stamps = pd.to_datetime(rng.integers(pd.Timestamp("1700-01-01").value // 10**9, pd.Timestamp("2260-01-01").value // 10**9, n), unit="s")
    text = pd.Series(np.where(rng.random(n) < 0.5, stamps.strftime("%Y-%m-%d %H:%M:%S"), stamps.strftime("%Y-%m-%dT%H:%M")))
    fast, read = D._plain_iso(text.astype("str"))
    assert read.all()
    expected = pd.to_datetime(text, format="ISO8601").astype("datetime64[ns]").to_numpy()
    np.testing.assert_array_equal(fast, expected)


# --------------------------------------------------------------------------- duplicates


def _first(codes):
    return R._first_of_groups(np.asarray(codes))


def assert_same_groups(frame: pd.DataFrame, mask: np.ndarray, extra=None) -> None:
    fast = R.record_groups(frame, mask, extra)
    general = R._record_groups_general(frame, mask, extra)
    np.testing.assert_array_equal(fast, general)  # the same codes: numbered in order of first appearance


def _messy_frame(rng, n: int, card: int) -> pd.DataFrame:
    words = np.array(["a", "b", "", "NA", "Ärger", "a ", None], dtype=object)
    text = rng.choice(words, n)
    numbers = rng.integers(0, card, n).astype(float)
    numbers[rng.random(n) < 0.1] = np.nan
    numbers[rng.random(n) < 0.05] = -0.0
    return pd.DataFrame({
        "t": pd.Series(text, dtype="str"),  # pyarrow-backed text with missing values
        "o": pd.Series(rng.choice(np.array([None, np.nan, "x", 1, 1.0], dtype=object), n), dtype=object),
        "f": numbers,
        "i": rng.integers(0, card, n),
        "d": pd.Series(rng.choice(np.array(["2021-05-01", "2021-05-02", ""], dtype=object), n), dtype="str"),
    })


@pytest.mark.parametrize("card", [1, 2, 5, 1000])
def test_duplicates_fast_grouping_equals_general(card):
    rng = np.random.default_rng(card)
    for n in (0, 1, 2, 7, 500, 3000):
        frame = _messy_frame(rng, n, card)
        for mask in (np.ones(n, bool), rng.random(n) < 0.7, np.zeros(n, bool)):
            assert_same_groups(frame, mask)
            wkb = shapely.to_wkb(shapely.points(rng.integers(0, 3, n), rng.integers(0, 2, n)))
            assert_same_groups(frame, mask, [wkb])


@pytest.mark.parametrize("card", [1, 5, 1000])
def test_duplicates_narrowed_by_parsed_values_equals_general(card):
    """``narrow`` arrays (values that equal rows share: parsed dates, numbers, or even a constant
    or a coarse function such as the text's length) change no group: the columns still decide."""
    rng = np.random.default_rng(100 + card)
    for n in (0, 1, 2, 500, 3000):
        frame = _messy_frame(rng, n, card)
        parsed = pd.to_datetime(frame["d"], errors="coerce").to_numpy()
        coarse = frame["t"].str.len().to_numpy()
        for narrow in ([parsed], [parsed, frame["f"].to_numpy() * 2], [np.zeros(n)], [coarse]):
            for mask in (np.ones(n, bool), rng.random(n) < 0.7):
                fast = R.record_groups(frame, mask, None, narrow)
                np.testing.assert_array_equal(fast, R._record_groups_general(frame, mask))


@pytest.mark.parametrize("card", [1, 2, 5, 1000])
def test_duplicates_text_summaries_equal_general(card, monkeypatch):
    """Text columns narrowed by their byte summaries first (every size, not only above 4096 rows)."""
    monkeypatch.setattr(R, "SUMMARY_MIN_ROWS", 0)
    rng = np.random.default_rng(200 + card)
    for n in (2, 7, 500, 3000):
        frame = _messy_frame(rng, n, card)
        for mask in (np.ones(n, bool), rng.random(n) < 0.7):
            assert_same_groups(frame, mask)


@pytest.mark.parametrize("dtype", [pa.string(), pa.large_string()])
def test_text_summary_separates_what_it_must_and_only_that(dtype, monkeypatch):
    """Strings alike in length and in their first and last 8 bytes but not between; empty, missing,
    multi-byte; an arrow array that is a slice of a larger one (non-zero offset)."""
    monkeypatch.setattr(R, "SUMMARY_MIN_ROWS", 0)
    base = ["2021-05-01 10:00:00", "2021-05-01 11:00:00", "2021-05-01 10:00:00", "", None, "", None,
            "abcdefgh-X-12345678", "abcdefgh-Y-12345678", "ä", "ä", "a", "abcdefghijklmnopq", "abcdefghijklmnopq"]
    big = pa.array(["skip me"] * 3 + base + ["and me"], type=dtype)
    text = big.slice(3, len(base))
    summary = R._text_summary(text, np.arange(len(base)))
    length, head, tail = summary
    assert list(length[:7]) == [19, 19, 19, 0, -1, 0, -1]
    assert head[0] == head[1] and tail[0] != tail[1]          # the hours differ in the last 8 bytes
    assert head[7] == head[8] and tail[7] == tail[8]          # alike except the middle: summaries equal
    assert head[9] == head[10] and head[9] != head[11]        # 'ä' is two bytes
    frame = pd.DataFrame({"t": pd.Series(pd.arrays.ArrowExtensionArray(text))})
    if dtype == pa.string():
        frame["t"] = frame["t"].astype("str")
    frame["u"] = 1
    mask = np.ones(len(base), bool)
    assert_same_groups(frame, mask)
    # rows 7 and 8 share every summary yet are different records
    codes = R.record_groups(frame, mask)
    assert codes[7] != codes[8] and codes[0] == codes[2] and codes[4] == codes[6] and codes[3] == codes[5]


def test_duplicates_fast_grouping_when_the_packed_key_would_overflow():
    # 12 columns of ~1,000 values each: the product of cardinalities passes 2**62 after 6 columns
    rng = np.random.default_rng(3)
    n = 20000
    base = rng.integers(0, 1000, (n // 4, 12))
    rows = base[rng.integers(0, len(base), n)]  # every row repeated ~4 times
    frame = pd.DataFrame({f"c{j}": pd.Series(rows[:, j].astype(str), dtype="str") for j in range(12)})
    frame["c3"] = rows[:, 3]  # a numeric column among the text
    assert_same_groups(frame, np.ones(n, bool))
    assert_same_groups(frame, rng.random(n) < 0.5)


def test_duplicates_a_unique_column_makes_every_row_distinct():
    frame = pd.DataFrame({"same": ["x"] * 5, "id": pd.Series([f"r{i}" for i in range(5)], dtype="str")})
    np.testing.assert_array_equal(R.record_groups(frame, np.ones(5, bool)), np.arange(5))
    assert_same_groups(frame, np.ones(5, bool))


def test_ledger_dropped_rows_equals_the_sorted_whole_ledger():
    ledger = Ledger()
    ledger.add("a", [5, 3], "dropped", "x")
    ledger.add("b", [3], "dropped", "x")
    ledger.add("a", [9], "kept", "duplicate")
    ledger.add("a", [3, 1], "dropped", "y")
    ledger.extend(pd.DataFrame({"source": ["a", "b"], "row": [7, 8], "status": ["dropped", "dropped"],
                                "reason": ["z", "z"], "detail": ["", ""]}))
    frame = ledger.to_frame()
    expected = np.unique(frame.loc[(frame["source"] == "a") & (frame["status"] == "dropped"), "row"].to_numpy())
    np.testing.assert_array_equal(Ledger.dropped_rows(ledger, "a"), expected)
    np.testing.assert_array_equal(expected, [1, 3, 5, 7])
    assert Ledger().dropped_rows("a").tolist() == []


# --------------------------------------------------------------------------- boundary overlaps


def test_overlap_check_on_prepared_polygons_finds_what_the_plain_relate_finds(monkeypatch):
    from usm_geo.intake.boundaries import _ledger_overlaps

    rng = np.random.default_rng(5)
    centres = rng.random((60, 2)) * 1000
    geom = shapely.buffer(shapely.points(centres), rng.random(60) * 80 + 5, quad_segs=4)
    geom[:10] = shapely.voronoi_polygons(shapely.multipoints(centres[:10]), extend_to=shapely.box(0, 0, 1000, 1000)).geoms
    ids, rows = np.array([f"u{i:02d}" for i in range(60)]), np.arange(1, 61)
    prepared = Ledger()
    _ledger_overlaps(geom, ids, rows, "b", prepared)
    assert not shapely.is_prepared(geom).any()  # handed back as they came
    monkeypatch.setattr(shapely, "prepare", lambda g: None)  # the plain relate, polygon by polygon
    plain = Ledger()
    _ledger_overlaps(geom, ids, rows, "b", plain)
    assert (prepared.to_frame()["reason"] == "overlapping_units").sum() > 10
    pd.testing.assert_frame_equal(prepared.to_frame(), plain.to_frame())


def test_plain_numbers_reads_every_decimal_string_as_pandas_does():
    """The coordinates' fast path (pyarrow's cast) = ``pd.to_numeric`` bit for bit on 950,000 random
    decimal strings (coordinates written to 1–17 significant digits, in plain and exponent notation,
    as portals publish them); the values it must leave to the careful path give None."""
    rng = np.random.default_rng(22)
    values = np.concatenate([rng.uniform(-180, 180, 400_000), rng.uniform(-1e7, 1e7, 300_000),
                             10.0 ** rng.uniform(-12, 15, 250_000)])
    digits = rng.integers(1, 18, len(values))
    text = [f"{v:.{d}g}" if k % 3 else f"{v:.{d}e}" for k, (v, d) in enumerate(zip(values, digits))]
    text = [t for t in text if float(t) != 0]  # zeros go the careful way (below)
    series = pd.Series(text, dtype=object)
    fast = R.plain_numbers(series)
    assert fast is not None
    slow = pd.to_numeric(series).to_numpy(np.float64)
    assert fast.view(np.int64).tolist() == slow.view(np.int64).tolist()
    for careful in (["1.5", " 2.5"], ["1,5", "2"], ["1.5", "NA"], ["1.5", ""], ["0", "1.5"], ["-0", "1"],
                    ["nan", "1"], ["9007199254740992", "1"]):
        assert R.plain_numbers(pd.Series(careful, dtype=object)) is None, careful


@pytest.mark.parametrize("dtype", [object, "string[pyarrow]", "str"])
def test_text_as_objects_equals_to_numpy(dtype):
    """``records._objects`` (factorize + take) gives the values ``Series.to_numpy(dtype=object)``
    gives, element by element and of the same types: labels, empty, spaces, unicode, missing."""
    rng = np.random.default_rng(7)
    labels = np.array(["STREET", "APARTMENT", "", " ", "Café", "街道", "unknown", None], dtype=object)
    text = pd.Series(labels[rng.integers(0, len(labels), 20_000)], dtype=dtype)
    got, want = R._objects(text), text.to_numpy(dtype=object)
    assert got.dtype == object and len(got) == len(want)
    assert [type(v) for v in got] == [type(v) for v in want]
    same = np.array([(pd.isna(a) and pd.isna(b)) if pd.isna(a) or pd.isna(b) else a == b for a, b in zip(got, want)])
    assert same.all()
    assert R._objects(pd.Series([], dtype=dtype)).shape == (0,)
