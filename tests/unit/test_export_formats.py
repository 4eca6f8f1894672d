"""Export formats on small hand-made tables: shapefile limits, determinism, CRS, GeoJSON, report card."""

import hashlib
import io
import json
import sys
import zipfile
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from usm_geo.errors import UsmGeoError
from usm_geo.export import (
    area_tables,
    check_dbf_values,
    field_dictionary,
    indicator_definitions,
    kde_threshold,
    write_area_outputs,
    write_geojson,
    write_run_exports,
)
from usm_geo.export.shapefiles import write_shapefiles
from usm_geo.indicators.report_card import COLUMNS as CARD_COLUMNS
from usm_geo.indicators.report_card import match_measures, records, report_card

UTM = "EPSG:32633"
MEASURE_COLUMNS = ["level", "unit_id", "period", "category", "measure", "numerator", "denominator", "value", "lower",
                   "upper", "n", "flags"]


def _units():
    """Three neighbourhoods side by side near Berlin (UTM 33N) and the city."""
    boxes = [shapely.box(390000 + 1000 * i, 5800000, 391000 + 1000 * i, 5801000) for i in range(3)]
    nb = gpd.GeoDataFrame({"unit_id": ["N1", "N2", "N3"], "name": ["Nord", "Süd", "Straße"], "parent_id": "city"},
                          geometry=boxes, crs=UTM)
    city = gpd.GeoDataFrame({"unit_id": ["city"], "name": ["Toy"], "parent_id": [None]},
                            geometry=[shapely.union_all(boxes)], crs=UTM)
    return {"neighbourhood": nb, "city": city}


def _measures():
    rows = []
    for period in ("2019", "2020"):
        for uid, n, pop in (("N1", 12, 1000.0), ("N2", 3, 800.0), ("N3", 40, 1200.0)):
            rows.append(("neighbourhood", uid, period, "all", "count", n, np.nan, n, np.nan, np.nan, n, ""))
            rows.append(("neighbourhood", uid, period, "all", "incident_rate", n, pop, 1000 * n / pop,
                         1000 * n / pop * 0.8, 1000 * n / pop * 1.2, n, "small_count" if n < 10 else ""))
        total = 55 if period == "2019" else 50
        rows.append(("city", "city", period, "all", "count", total, np.nan, total, np.nan, np.nan, total, ""))
        rows.append(("city", "city", period, "all", "incident_rate", total, 3000.0, total / 3.0, total / 3.0 * 0.9,
                     total / 3.0 * 1.1, total, ""))
        rows.append(("city", "city", period, "all", "safe_share", 700.0, 1000.0, 0.7, 0.65, 0.75, 400, ""))
    return pd.DataFrame(rows, columns=MEASURE_COLUMNS)


def _crosswalk():
    return pd.DataFrame({"level": "neighbourhood", "unit_id": ["N1", "N2", "N3"], "to_level": "city",
                         "to_unit_id": "city", "overlap_share": 1.0, "nested": True})


DEFINITIONS = {"incident_rate": {"id": "incident_rate", "name": "Recorded incidents per 1,000 residents", "theme": "Crime",
                                 "kind": "rate", "source": "police", "per": 1000.0, "sdg": None, "lower_is_better": True},
               "safe_share": {"id": "safe_share", "name": "Feel safe", "theme": "Community", "kind": "share",
                              "source": "survey", "sdg": "16.1.4", "lower_is_better": False}}


def _internal(**kw):
    return area_tables(_units(), _measures(), _crosswalk(), profile="internal", **kw)


# --------------------------------------------------------------------------- tables


def test_area_tables_are_indicators_csv_per_level_with_geometry():
    t = _internal()
    assert list(t.layers) == ["neighbourhood", "city"]
    nb = t.layers["neighbourhood"]
    assert list(nb.columns[:4]) == ["level", "unit_id", "name", "period"]
    for part in ("", "_lower", "_upper", "_n", "_flags"):
        assert f"incident_rate{part}" in nb.columns
    assert len(nb) == 6 and nb.crs.to_epsg() == 32633
    assert nb.loc[(nb["unit_id"] == "N2") & (nb["period"] == "2019"), "incident_rate_n"].item() == 3
    assert str(nb["incident_rate_n"].dtype) == "Int64"


def test_filters_and_clear_errors():
    t = _internal(indicators=["incident_rate"], levels=["neighbourhood"], periods=["2020"])
    assert list(t.layers) == ["neighbourhood"] and set(t.layers["neighbourhood"]["period"]) == {"2020"}
    assert "safe_share" not in t.layers["neighbourhood"]
    with pytest.raises(UsmGeoError, match="no indicator 'nope'.*\n.*incident_rate"):
        _internal(indicators=["nope"])
    with pytest.raises(UsmGeoError, match="no level 'ward'"):
        _internal(levels=["ward"])
    with pytest.raises(UsmGeoError, match="no period '2031'"):
        _internal(periods=["2031"])
    with pytest.raises(UsmGeoError, match="unknown profile"):
        area_tables(_units(), _measures(), _crosswalk(), profile="secret")


def test_crs_reprojection():
    t = _internal(crs="EPSG:3035")
    nb = t.layers["neighbourhood"]
    assert nb.crs.to_epsg() == 3035 and t.crs.to_epsg() == 3035
    expected = _units()["neighbourhood"].to_crs(3035).geometry.iloc[0]
    assert shapely.equals_exact(nb.geometry.iloc[0], expected, tolerance=1e-6)
    assert 4_000_000 < nb.geometry.iloc[0].centroid.x < 5_000_000  # LAEA Europe metres, not UTM
    with pytest.raises(UsmGeoError, match="not a coordinate reference system"):
        _internal(crs="EPSG:999999")


def test_public_profile_without_disclosure_module_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "usm_geo.disclosure", None)  # as if it were not installed
    with pytest.raises(UsmGeoError, match="public profile needs usm_geo.disclosure"):
        area_tables(_units(), _measures(), _crosswalk(), profile="public")
    assert _internal().profile == "internal"  # internal needs no suppression


# --------------------------------------------------------------------------- shapefiles


def _zip_layers():
    t = _internal()
    return t, {lv: f for lv, f in t.layers.items()}


def test_shapefile_zip_fields_are_reversible(tmp_path):
    t, layers = _zip_layers()
    defs = indicator_definitions(t.ids, DEFINITIONS)
    cols = list(layers["neighbourhood"].columns.drop("geometry"))
    target = tmp_path / "shapefiles.zip"
    write_shapefiles(target, t, {}, field_dictionary(cols, defs))
    with zipfile.ZipFile(target) as z:
        names = z.namelist()
        assert names == sorted(names)
        assert {n.rsplit(".", 1)[1] for n in names if n != "fields.csv"} == {"shp", "shx", "dbf", "prj", "cpg"}
        assert z.read("neighbourhood_2020.cpg").decode().strip().upper() in ("UTF-8", "UTF8")
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in z.infolist())
        fields = pd.read_csv(io.BytesIO(z.read("fields.csv")), dtype=str, keep_default_na=False)
    assert list(fields.columns) == ["layer", "short_name", "name", "period", "description", "unit"]
    assert fields["short_name"].str.len().max() <= 10 and fields["short_name"].str.isascii().all()
    mine = fields[fields["layer"] == "neighbourhood_2020"]
    assert mine["short_name"].str.casefold().is_unique  # DBF names are case-insensitive
    back = pyogrio.read_dataframe(f"/vsizip/{target}/neighbourhood_2020.shp")
    back = back.rename(columns=dict(zip(mine["short_name"], mine["name"])))
    assert list(back.columns.drop("geometry")) == cols  # every field comes back under its full name
    want = layers["neighbourhood"][layers["neighbourhood"]["period"] == "2020"]
    assert back["name"].tolist() == want["name"].tolist()  # UTF-8 names survive
    np.testing.assert_allclose(back["incident_rate"], want["incident_rate"], rtol=1e-12)
    row = mine.set_index("name").loc["incident_rate_n"]
    assert row["unit"] == "incidents" and "Recorded incidents" in row["description"]
    assert mine.set_index("name").loc["incident_rate", "unit"] == "per 1,000 residents"


def test_zip_is_byte_deterministic(tmp_path):
    t, _ = _zip_layers()
    digests = []
    for name in ("a.zip", "b.zip"):
        write_shapefiles(tmp_path / name, t, {})
        digests.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    with zipfile.ZipFile(tmp_path / "a.zip") as z:
        dbf = z.read("city_2020.dbf")
    assert tuple(dbf[1:4]) == (80, 1, 1)  # DBF "last update" 1980-01-01, not today
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "b.zip"]  # no temporaries left


@pytest.mark.parametrize("value, what", [
    ("x" * 300, "300 bytes"),
    ("é" * 128, "256 bytes"),  # 128 characters but 256 UTF-8 bytes
])
def test_text_too_long_for_dbf_is_an_error(tmp_path, value, what):
    t, layers = _zip_layers()
    nb = layers["neighbourhood"]
    layers["neighbourhood"] = nb.assign(name=np.where(nb["unit_id"] == "N2", value, "ok"))
    target = tmp_path / "shapefiles.zip"
    with pytest.raises(UsmGeoError) as err:
        write_shapefiles(target, SimpleNamespace(layers=layers, ids=t.ids), {})
    assert "field 'name'" in str(err.value) and what in str(err.value) and "unit N2" in str(err.value)
    assert not target.exists() and list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.parametrize("value, message", [(1e30, "more than the 24 characters"), (np.inf, "not a finite number")])
def test_number_too_wide_for_dbf_is_an_error(value, message):
    frame = gpd.GeoDataFrame({"unit_id": ["a", "b"], "incident_rate_upper": [1.0, value]},
                             geometry=[shapely.Point(0, 0)] * 2, crs=UTM)
    with pytest.raises(UsmGeoError, match=f"field 'incident_rate_upper' \\(shapefile field 'incident_1'\\), unit b: .*{message}"):
        check_dbf_values(frame, {"incident_rate_upper": "incident_1"}, "test")
    frame = frame.assign(incident_rate_upper=[1.0, 1e23])  # 24 digits still fit
    check_dbf_values(frame, {}, "test")
    ints = frame.assign(big=pd.array([1, 10**18], dtype="Int64"))
    with pytest.raises(UsmGeoError, match="field 'big'.*18 characters"):
        check_dbf_values(ints, {}, "test")


# --------------------------------------------------------------------------- GeoJSON, GeoParquet, folder


def test_geojson_is_rfc7946_wgs84(tmp_path):
    layer = _internal().layers["neighbourhood"]
    write_geojson(tmp_path / "n.geojson", layer)
    doc = json.loads((tmp_path / "n.geojson").read_text(encoding="utf-8"))
    assert "crs" not in doc  # RFC 7946: always WGS 84 lon/lat, no crs member
    lon, lat = np.array(doc["features"][0]["geometry"]["coordinates"][0]).T
    assert (12 < lon).all() and (lon < 14).all() and (52 < lat).all() and (lat < 53).all()
    assert pyogrio.read_info(tmp_path / "n.geojson")["crs"] == "EPSG:4326"
    assert doc["features"][1]["properties"]["name"] == "Nord"
    # exported in another CRS, GeoJSON is still EPSG:4326
    write_geojson(tmp_path / "m.geojson", _internal(crs="EPSG:3857").layers["neighbourhood"])
    assert (tmp_path / "m.geojson").read_bytes() == (tmp_path / "n.geojson").read_bytes()


def test_folder_layout_and_metadata(tmp_path):
    import pyarrow.parquet as pq

    t = _internal()
    card = report_card(t.measures, None, DEFINITIONS, baseline="2019", current="2020", city_name="Toy")
    res = write_area_outputs(tmp_path, t, ("gpkg", "shp", "geojson", "parquet", "csv"), definitions=DEFINITIONS,
                             report_card=card, info={"packages": {"numpy": "x"}, "inputs": {"incidents": {"sha256": "ab"}}})
    assert res["files"] == sorted(["areas.gpkg", "shapefiles.zip", "areas_neighbourhood.geojson", "areas_city.geojson",
                                   "areas_neighbourhood.parquet", "areas_city.parquet", "indicators.csv",
                                   "report_card.json", "report_card.csv", "metadata.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == res["files"]
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["profile"] == "internal" and meta["crs"]["layers"] == "EPSG:32633" and meta["periods"] == ["2019", "2020"]
    assert meta["indicators"]["incident_rate"]["per"] == 1000.0 and meta["software"] == {"numpy": "x"}
    assert meta["inputs"]["incidents"]["sha256"] == "ab"
    assert meta["files"]["indicators.csv"] == hashlib.sha256((tmp_path / "indicators.csv").read_bytes()).hexdigest()
    geo = json.loads(pq.read_schema(tmp_path / "areas_city.parquet").metadata[b"geo"])
    assert geo["columns"][geo["primary_column"]]["crs"]["id"] == {"authority": "EPSG", "code": 32633}
    back = gpd.read_parquet(tmp_path / "areas_neighbourhood.parquet")
    assert back.crs.to_epsg() == 32633 and len(back) == 6 and back["unit_id"].tolist()[:2] == ["N1", "N1"]
    assert pyogrio.list_layers(tmp_path / "areas.gpkg")[:, 0].tolist() == ["neighbourhood", "city"]


def test_kde_threshold_is_k_single_event_peaks():
    tags = {"BANDWIDTH": "500.0", "CELL_SIZE": "100.0", "KERNEL": "quartic"}
    one = kde_threshold(tags, 1)
    assert one == pytest.approx(3 / (np.pi * 0.5 ** 2), rel=0.1)  # ≈ the analytic peak 3/(πh²) per km²
    assert kde_threshold(tags, 5) == pytest.approx(5 * one)
    gauss = kde_threshold({**tags, "KERNEL": "gaussian"}, 1)
    assert gauss == pytest.approx(1 / (2 * np.pi * 0.5 ** 2), rel=0.1)
    assert kde_threshold({"KERNEL": "quartic"}, 5) is None


# --------------------------------------------------------------------------- report card


PROGRESS = pd.DataFrame({
    "level": ["city", "neighbourhood"], "unit_id": ["city", "N1"], "indicator": ["incident_rate", "incident_rate"],
    "trend_per_year": [-0.09, 0.0], "baseline": ["2019", "2019"], "current": ["2020", "2020"],
    "baseline_value": [55 / 3, 12.0], "current_value": [50 / 3, 12.0], "change": [50 / 55 - 1, 0.0],
    "change_lower": [-0.3, -0.5], "change_upper": [0.1, 0.5], "target_year": [2030, np.nan],
    "target_value": [9.0, np.nan], "status": ["on track", ""], "status_reason": ["", ""],
})


def test_report_card_one_record_per_indicator():
    card = report_card(_measures(), PROGRESS, DEFINITIONS, baseline="2019", current="2020", city_name="Toy")
    assert list(card.columns) == CARD_COLUMNS
    assert card["indicator"].tolist() == ["incident_rate", "safe_share"]
    rate = card.set_index("indicator").loc["incident_rate"]
    assert rate["value"] == pytest.approx(50 / 3) and rate["n"] == 50 and rate["period"] == "2020"
    assert rate["baseline_value"] == pytest.approx(55 / 3) and rate["change"] == pytest.approx(50 / 55 - 1)
    assert rate["target_status"] == "on track" and rate["target_year"] == 2030 and rate["unit"] == "per 1,000 residents"
    share = card.set_index("indicator").loc["safe_share"]
    assert share["sdg"] == "16.1.4" and share["source"] == "survey" and pd.isna(share["change"])
    recs = records(card)
    assert json.loads(json.dumps(recs, allow_nan=False))[0]["city"] == "Toy"
    assert recs[1]["change"] is None and isinstance(recs[0]["n"], int)


def test_report_card_withholds_change_when_a_value_is_suppressed():
    m = _measures()
    sel = (m["level"] == "city") & (m["measure"] == "incident_rate") & (m["period"] == "2019")
    m.loc[sel, ["value", "lower", "upper", "n"]] = np.nan
    m.loc[sel, "flags"] = "suppressed"
    card = report_card(m, PROGRESS, DEFINITIONS, baseline="2019", current="2020", city_name="Toy").set_index("indicator")
    assert pd.isna(card.loc["incident_rate", "baseline_value"]) and pd.isna(card.loc["incident_rate", "change"])
    assert card.loc["incident_rate", "target_status"] == "suppressed"
    # the same from a card built on exact values, re-taken from the suppressed measures
    full = report_card(_measures(), PROGRESS, DEFINITIONS, baseline="2019", current="2020", city_name="Toy")
    again = match_measures(full, m).set_index("indicator")
    assert pd.isna(again.loc["incident_rate", "change"]) and again.loc["incident_rate", "target_status"] == "suppressed"
    assert again.loc["safe_share", "value"] == 0.7


def test_report_card_withholds_trend_when_any_period_is_suppressed():
    m = _measures()
    sel = (m["level"] == "city") & (m["measure"] == "incident_rate") & (m["period"] == "2019")
    m.loc[sel, "flags"] = "suppressed"  # value kept only to show that the flag alone decides
    card = report_card(m, PROGRESS, DEFINITIONS, baseline="2018", current="2020", city_name="Toy")
    assert pd.isna(card.set_index("indicator").loc["incident_rate", "trend_per_year"])


# --------------------------------------------------------------------------- the run folder's exports


def test_write_run_exports_internal(tmp_path):
    card = report_card(_measures(), PROGRESS, DEFINITIONS, baseline="2019", current="2020", city_name="Toy")
    impact = gpd.GeoDataFrame({"area": ["treated", "buffer", "control"], "before": [3, 40, 900], "after": [2, 35, 880]},
                              geometry=[shapely.box(0, 0, 1, 1)] * 3, crs=UTM)
    res = write_run_exports(tmp_path, _units(), _measures(), _crosswalk(), profile="internal", k=5, report_card=card,
                            impact_areas=impact)
    assert res["files"] == ["areas.gpkg", "map.html", "report_card.csv", "report_card.json", "shapefiles.zip"]
    assert pyogrio.list_layers(tmp_path / "areas.gpkg")[:, 0].tolist() == ["neighbourhood", "city", "impact_areas"]
    back = pyogrio.read_dataframe(tmp_path / "areas.gpkg", layer="impact_areas")
    assert back["before"].tolist() == [3, 40, 900]  # internal: exact
    nb = pyogrio.read_dataframe(tmp_path / "areas.gpkg", layer="neighbourhood")
    assert nb.loc[nb["unit_id"] == "N2", "incident_rate_n"].tolist() == [3, 3]


def test_write_run_exports_public(tmp_path):
    pytest.importorskip("usm_geo.disclosure")
    card = report_card(_measures(), PROGRESS, DEFINITIONS, baseline="2019", current="2020", city_name="Toy")
    impact = gpd.GeoDataFrame({"area": ["treated"], "before": [3], "after": [2]}, geometry=[shapely.box(0, 0, 1, 1)],
                              crs=UTM)
    hot = {"neighbourhood": _units()["neighbourhood"].assign(period="2020", count=[12, 3, 40], gistar_z=[0.123, -1.46, 2.0],
                                                             gistar_p=0.1, gistar_bin=[0, 0, 1], lisa_quadrant="HH")}
    write_run_exports(tmp_path, _units(), _measures(), _crosswalk(), profile="public", k=5, report_card=card,
                      impact_areas=impact, hotspots=hot)
    nb = pyogrio.read_dataframe(tmp_path / "areas.gpkg", layer="neighbourhood")
    n = nb["incident_rate_n"].to_numpy(dtype=float)
    assert not ((n >= 1) & (n < 5)).any()  # N2's 3 (and whatever hides it) are suppressed
    assert nb.loc[nb["unit_id"] == "N2", "incident_rate"].isna().all()
    assert "suppressed" in ";".join(nb["incident_rate_flags"].fillna(""))
    layers = pyogrio.list_layers(tmp_path / "areas.gpkg")[:, 0].tolist()
    assert layers == ["neighbourhood", "city", "hotspots_neighbourhood", "impact_areas"]
    hs = pyogrio.read_dataframe(tmp_path / "areas.gpkg", layer="hotspots_neighbourhood")
    assert list(hs.columns) == ["unit_id", "name", "period", "gistar_z", "gistar_bin", "lisa_quadrant", "significance",
                                "geometry"]
    assert hs["gistar_z"].tolist() == [0.1, -1.5, 2.0]
    # the public rule re-applied (usm_geo.hotspots.fdr.public_rule): BH of p = 0.1 at every unit is 0.1, not
    # below 0.10, so the raw-p bin 1 goes; a quadrant without a LISA p-value is not published
    assert hs["gistar_bin"].tolist() == [0, 0, 0] and set(hs["lisa_quadrant"]) == {"not_significant"}
    assert set(hs["significance"]) == {"BH FDR q < 0.05"}
    assert list(pyogrio.read_dataframe(tmp_path / "areas.gpkg", layer="impact_areas").columns) == ["area", "geometry"]
    with zipfile.ZipFile(tmp_path / "shapefiles.zip") as z:
        names = z.namelist()  # long layout (usm_geo.export.shapefiles): a layer per level and period
    assert {"neighbourhood_2019.dbf", "neighbourhood_2020.dbf", "city_2020.dbf", "hotspots_neighbourhood_2020.dbf",
            "impact_areas.dbf", "fields.csv"} <= set(names)
