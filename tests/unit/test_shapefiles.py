"""Shapefile names and layouts (usm_geo.export.shapefiles) on small hand-made tables, opened with GDAL's ogrinfo."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from usm_geo.errors import UsmGeoError
from usm_geo.export.shapefiles import field_names, indicator_stems, period_code, shapefile_zip_bytes

UTM = "EPSG:32633"
IDS = ["homicide_rate", "homicide_rate_eb", "homicide_rate_seb", "harassment_share", "safe_after_dark_share"]


def _columns(ids):
    cols = ["level", "unit_id", "name", "period"]
    for i in ids:
        cols += [i, f"{i}_lower", f"{i}_upper", f"{i}_n", f"{i}_flags"]
    return cols


def test_abbreviation_table_names():
    short = field_names(_columns(IDS), IDS)
    assert short["homicide_rate"] == "hom_rate" and short["homicide_rate_lower"] == "hom_lo"
    assert short["homicide_rate_upper"] == "hom_hi" and short["homicide_rate_n"] == "hom_n"
    assert short["homicide_rate_flags"] == "hom_fl"
    assert [short[f"homicide_rate_eb{p}"] for p in ("", "_lower", "_upper", "_n", "_flags")] == \
        ["hom_eb", "hom_elo", "hom_ehi", "hom_en", "hom_efl"]
    assert short["homicide_rate_seb_upper"] == "hom_shi"
    assert short["harassment_share"] == "har_shr" and short["safe_after_dark_share_lower"] == "dark_lo"
    assert short["level"] == "level" and short["period"] == "period"


def test_collisions_use_letters_never_digits():
    ids = ["homicide_rate", "homicide_share", "homicide_score", "theft_1_rate", "x2_rate", "count"]
    stems = indicator_stems(ids)
    # hom taken: the next indicator with the same stem ends it in the first free letter
    assert stems["homicide_rate"] == "hom" and stems["homicide_share"] == "homa" and stems["homicide_score"] == "homb"
    short = field_names(_columns(ids) + ["area_km2", "some_value_2"], ids)
    assert len({s.casefold() for s in short.values()}) == len(short)
    assert all(len(s) <= 10 and not s[-1].isdigit() and not s[0].isdigit() for s in short.values()), short
    assert short["count"] == "count" and short["count_lower"] == "cnt_lo" and short["area_km2"] == "area_km"
    # deterministic: the same columns give the same names
    assert field_names(_columns(ids), ids) == field_names(_columns(ids), ids)


def test_period_codes_are_letters():
    assert [period_code(i) for i in (0, 1, 25, 26, 27, 51, 52)] == ["a", "b", "z", "aa", "ab", "az", "ba"]
    assert len({period_code(i) for i in range(800)}) == 800


def _layers():
    """Two units × three periods; values from a formula so the test can recompute them."""
    rows = []
    for u, uid in enumerate(["n1", "n2"]):
        for p, period in enumerate(["2019", "2020", "2021"]):
            rows.append({"level": "neighbourhood", "unit_id": uid, "name": ["Süd", "Nord"][u], "period": period,
                         "homicide_rate": 10.0 * u + p, "homicide_rate_lower": 5.0 * u + p,
                         "homicide_rate_upper": 20.0 * u + p, "homicide_rate_n": 7 * u + p, "homicide_rate_flags": ""})
    frame = pd.DataFrame(rows)
    frame["homicide_rate_n"] = frame["homicide_rate_n"].astype("Int64")
    geoms = {"n1": shapely.box(0, 0, 1000, 1000), "n2": shapely.box(1000, 0, 2000, 1000)}
    return {"neighbourhood": gpd.GeoDataFrame(frame, geometry=[geoms[u] for u in frame["unit_id"]], crs=UTM)}


def _ogrinfo(path):
    exe = shutil.which("ogrinfo")
    if exe is None:
        pytest.skip("ogrinfo (gdal-bin) is not installed")
    res = subprocess.run([exe, "-ro", "-so", "-al", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


def _unzip(data, tmp_path):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        z.extractall(tmp_path)
        return pd.read_csv(io.BytesIO(z.read("fields.csv")), dtype=str, keep_default_na=False), z.namelist()


def test_long_layout_one_layer_per_period(tmp_path):
    layers = _layers()
    data, fields = shapefile_zip_bytes(layers, {}, ["homicide_rate"], workdir=tmp_path)
    read, names = _unzip(data, tmp_path)
    assert sorted(n for n in names if n.endswith(".shp")) == [f"neighbourhood_{p}.shp" for p in ("2019", "2020", "2021")]
    for p in ("2019", "2020", "2021"):
        for ext in ("shx", "dbf", "prj", "cpg"):
            assert f"neighbourhood_{p}.{ext}" in names
        out = _ogrinfo(tmp_path / f"neighbourhood_{p}.shp")
        assert "Feature Count: 2" in out and "hom_rate: Real" in out
        back = pyogrio.read_dataframe(tmp_path / f"neighbourhood_{p}.shp")
        want = layers["neighbourhood"][layers["neighbourhood"]["period"] == p]
        np.testing.assert_array_equal(back["hom_rate"], want["homicide_rate"])
        np.testing.assert_array_equal(back["hom_n"], want["homicide_rate_n"].astype(int))
        assert back["name"].tolist() == ["Süd", "Nord"]  # UTF-8 through the .cpg
        assert back.crs.equals(UTM)
    assert read.equals(fields) and set(read.columns) == {"layer", "short_name", "name", "period", "description", "unit"}


def test_wide_layout_period_letters(tmp_path):
    layers = _layers()
    data, fields = shapefile_zip_bytes(layers, {}, ["homicide_rate"], shape="wide", workdir=tmp_path)
    read, names = _unzip(data, tmp_path)
    assert [n for n in names if n.endswith(".shp")] == ["neighbourhood.shp"]
    assert "Feature Count: 2" in _ogrinfo(tmp_path / "neighbourhood.shp")
    back = pyogrio.read_dataframe(tmp_path / "neighbourhood.shp")
    assert "period" not in back.columns
    assert not any(c[-1].isdigit() for c in back.columns if c != "geometry")
    full = read.set_index("short_name")
    assert full.loc["hom_rate_a", "name"] == "homicide_rate" and full.loc["hom_rate_a", "period"] == "2019"
    assert full.loc["hom_lo_c", "name"] == "homicide_rate_lower" and full.loc["hom_lo_c", "period"] == "2021"
    src = layers["neighbourhood"].set_index(["unit_id", "period"])
    for short, rec in full.iterrows():  # every period column equals the long table's value for that unit
        if rec["period"]:
            want = [src.loc[(u, rec["period"]), rec["name"]] for u in back["unit_id"]]
            got = back[short].tolist()
            assert [("" if pd.isna(w) else w) for w in want] == [("" if g is None else g) for g in got], short
    assert set(back.columns) - {"geometry"} == set(full.index)


def test_wide_layout_over_255_fields_is_refused(tmp_path):
    layers = _layers()
    frame = layers["neighbourhood"].drop_duplicates("unit_id")
    many = pd.concat([frame.assign(period=str(2000 + i)) for i in range(60)], ignore_index=True)
    with pytest.raises(UsmGeoError, match="(?s)at most 255.*--shape long"):
        shapefile_zip_bytes({"neighbourhood": gpd.GeoDataFrame(many, crs=UTM)}, {}, ["homicide_rate"], shape="wide",
                            workdir=tmp_path)
