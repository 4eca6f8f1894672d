"""`usm-geo export --format SHP` on the Demo City run (the session's `demo` fixture), public and
internal: every layer opened by GDAL's ogrinfo, one feature per unit, names from the abbreviation
table, every field in fields.csv, values equal to the run's own indicators.csv (the run is internal,
so it holds the exact values; looked up with pandas) and, in public, no count 1 … k−1.

Tolerance of the value checks: GDAL writes shapefile reals as ``Real (24.15)``, i.e. 15 decimals, so
a value read back differs from the run's double by at most 0.5e-15 (the printed rounding) plus the
double's own rounding: ``atol=1e-15, rtol=1e-15`` (the largest difference seen on the demo run was
8.9e-16 on a value of 5.98)."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import zipfile

import numpy as np
import pandas as pd
import pyogrio
import pytest
from click.testing import CliRunner

from usm_geo.cli import main

ATOL = RTOL = 1e-15  # the DBF's 15 written decimals (see the module docstring)
FIXED = {"level", "unit_id", "name", "period"}
#: a field name GDAL's own shortening would give (homicide_1, harassmen1) or a period in the name
DIGIT_END = re.compile(r"\d$")


def _ogrinfo(folder):
    """stem → (feature count, [field names]) as GDAL's ogrinfo reports them."""
    exe = shutil.which("ogrinfo")
    if exe is None:
        pytest.skip("ogrinfo (gdal-bin) is not installed")
    out = {}
    for shp in sorted(folder.glob("*.shp")):
        res = subprocess.run([exe, "-ro", "-so", "-al", str(shp)], capture_output=True, text=True, timeout=120,
                             check=False)
        assert res.returncode == 0, res.stderr
        count = int(re.search(r"Feature Count: (\d+)", res.stdout).group(1))
        fields = re.findall(r"^(\S+): (?:String|Integer|Integer64|Real|Date)\b", res.stdout, re.MULTILINE)
        out[shp.stem] = (count, fields)
    return out


def _export(run_dir, out, *args):
    r = CliRunner().invoke(main, ["export", str(run_dir), "--out", str(out), *args])
    assert r.exit_code == 0, r.output
    folder = out / "unzipped"
    with zipfile.ZipFile(out / "shapefiles.zip") as z:
        z.extractall(folder)
        fields = pd.read_csv(io.BytesIO(z.read("fields.csv")), dtype=str, keep_default_na=False)
    return folder, fields


def _units(run_dir):
    return {str(lv): pyogrio.read_info(run_dir / "units.gpkg", layer=str(lv))["features"]
            for lv, _ in pyogrio.list_layers(run_dir / "units.gpkg")}


def _indicators(run_dir):
    """The run's indicators.csv (internal, exact), keyed by level, unit_id, period."""
    t = pd.read_csv(run_dir / "indicators.csv", dtype={"level": str, "unit_id": str, "period": str, "name": str},
                    low_memory=False)
    return t.set_index(["level", "unit_id", "period"])


def _level_of(stem):
    return re.sub(r"_\d{4}$", "", stem.removeprefix("hotspots_"))


@pytest.fixture(scope="module")
def public_long(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("shp") / "public"
    return _export(demo[0], out, "--format", "SHP", "--format", "Gpkg") + (out,)  # formats in any case


@pytest.fixture(scope="module")
def internal_long(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("shp") / "internal"
    return _export(demo[0], out, "--format", "shp", "--profile", "internal")


def _check_layers(folder, fields, run_dir):
    """ogrinfo opens every layer; names end in no digit; fields.csv = the layers' fields; one feature per unit."""
    units = _units(run_dir)
    info = _ogrinfo(folder)
    stems = sorted(p.stem for p in folder.glob("*.shp"))
    assert set(fields["layer"]) == set(stems)  # every fields.csv row names a layer in the zip
    periods = sorted(pd.read_csv(run_dir / "measures.csv", usecols=["period"], dtype=str)["period"].unique())
    for stem in stems:
        assert (folder / f"{stem}.prj").exists() and (folder / f"{stem}.cpg").read_text().strip() == "UTF-8"
        count, names = info[stem]
        assert not [n for n in names if DIGIT_END.search(n)], stem  # no harassmen1 / homicide_1
        assert not [n for n in names if any(p in n for p in periods)], stem  # the period is in the file name only
        assert all(len(n) <= 10 for n in names)
        assert names == fields.loc[fields["layer"] == stem, "short_name"].tolist(), stem  # and in this order
        if stem == "impact_areas":
            impact = pyogrio.read_info(run_dir / "impact_areas.gpkg")["features"]
            assert count == impact == 3
            continue
        assert count == units[_level_of(stem)], stem  # one feature per unit, not one per unit and period
    assert {f"{lv}_{p}" for lv in units for p in periods} <= set(stems)
    assert {"hotspots_neighbourhood_2023", "hotspots_h3_9_2023", "impact_areas"} <= set(stems)
    return stems


def _check_values(folder, fields, run_dir, stems, *, public):
    """Every numeric field of every area layer against the run's indicators.csv (internal, exact):
    the same value wherever the shapefile shows one; public blanks only where the profile says."""
    ind = _indicators(run_dir)
    checked = set()
    for stem in stems:
        if stem.startswith(("hotspots_", "impact_")):
            continue
        frame = pyogrio.read_dataframe(folder / f"{stem}.shp", read_geometry=False)
        f = fields[fields["layer"] == stem].set_index("short_name")["name"]
        assert list(frame.columns) == list(f.index)
        level, period = frame["level"].iloc[0], frame["period"].iloc[0]
        assert stem == f"{level}_{period}" and (frame["period"] == period).all()
        ref = ind.loc[[(level, u, period) for u in frame["unit_id"]]]
        assert frame["name"].tolist() == ref["name"].fillna("").tolist() or level.startswith("h3_")
        for short, long in f.items():
            if long in FIXED or long.endswith("_flags"):
                continue
            got = frame[short].to_numpy(float)
            want = ref[long].to_numpy(float)
            shown = ~np.isnan(got)
            np.testing.assert_allclose(got[shown], want[shown], rtol=RTOL, atol=ATOL, err_msg=f"{stem}:{short}")
            if not public:
                assert np.array_equal(shown, ~np.isnan(want)), f"{stem}:{short}"  # internal blanks nothing
            else:  # public may blank (suppression, checked below), never invent a value
                assert not (shown & np.isnan(want)).any(), f"{stem}:{short}"
            checked.add(long)
    return checked


def test_public_long_layers_open_and_count_units(public_long, demo):
    folder, fields, _ = public_long
    _check_layers(folder, fields, demo[0])


def test_internal_long_layers_and_values_equal_the_run(internal_long, demo):
    folder, fields = internal_long
    stems = _check_layers(folder, fields, demo[0])
    checked = _check_values(folder, fields, demo[0], stems, public=False)
    # a rate with its interval, smoothed rates, a survey share, counts: all compared
    assert {"homicide_rate", "homicide_rate_lower", "homicide_rate_upper", "homicide_rate_n", "homicide_rate_eb",
            "homicide_rate_seb_upper", "incident_rate", "harassment_share", "harassment_share_n"} <= checked
    f = fields[fields["layer"] == "neighbourhood_2021"].set_index("name")["short_name"]
    assert f[["homicide_rate", "homicide_rate_lower", "homicide_rate_upper", "homicide_rate_eb",
              "harassment_share"]].tolist() == ["hom_rate", "hom_lo", "hom_hi", "hom_eb", "har_shr"]
    # hot spot layers: the run's hotspots.gpkg, field by field
    hs = pyogrio.read_dataframe(demo[0] / "hotspots.gpkg", layer="neighbourhood", read_geometry=False)
    shp = pyogrio.read_dataframe(folder / "hotspots_neighbourhood_2023.shp", read_geometry=False)
    hs = hs[hs["period"] == "2023"].set_index("unit_id").loc[shp["unit_id"]]
    np.testing.assert_allclose(shp["gi_z"].to_numpy(float), hs["gistar_z"].to_numpy(float), rtol=RTOL, atol=ATOL)
    assert shp["gi_bin"].tolist() == hs["gistar_bin"].tolist()


def test_public_values_are_the_runs_or_suppressed_by_the_rule(public_long, demo):
    """Shown values equal the run's; blanks follow disclosure.py. In particular every ``hom_eb`` of
    neighbourhood_2021 is blank, and correctly so: the rule "smoothed groups" suppresses a level ×
    indicator × category × period of ``_eb``/``_seb`` rates when any of its counts is suppressed (EB
    borrows from every unit), and the run holds neighbourhood homicide counts 1 … k−1 in 2021."""
    folder, fields, out = public_long
    run_dir = demo[0]
    stems = sorted(p.stem for p in folder.glob("*.shp"))
    checked = _check_values(folder, fields, run_dir, stems, public=True)
    assert {"homicide_rate", "homicide_rate_lower", "homicide_rate_upper", "incident_rate_eb"} <= checked
    k = json.loads((run_dir / "run.json").read_text())["outputs"]["suppression_threshold"]
    ind = _indicators(run_dir)
    gpkg = {lv: pyogrio.read_dataframe(out / "areas.gpkg", layer=lv, read_geometry=False)
            for lv in ("neighbourhood", "district", "city", "h3_9")}
    groups_blank = 0
    for stem in stems:
        if stem.startswith(("hotspots_", "impact_")):
            continue
        frame = pyogrio.read_dataframe(folder / f"{stem}.shp", read_geometry=False)
        short = fields[fields["layer"] == stem].set_index("name")["short_name"]
        level, period = frame["level"].iloc[0], frame["period"].iloc[0]
        ref = ind.loc[[(level, u, period) for u in frame["unit_id"]]]
        # the shapefile holds what the public GeoPackage of the same export holds, column for column
        g = gpkg[level][gpkg[level]["period"] == period].set_index("unit_id").loc[frame["unit_id"]]
        for long, s in short.items():
            if long in FIXED:
                continue
            a, b = frame[s], g[long]
            if long.endswith("_flags"):
                assert a.fillna("").tolist() == b.fillna("").tolist(), f"{stem}:{s}"
            else:
                np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=RTOL, atol=ATOL,
                                           err_msg=f"{stem}:{s}")
        for long, s in short.items():
            if long in FIXED or not long.endswith("_n") and long != "count":
                continue
            v = pd.to_numeric(frame[s], errors="coerce")
            assert not ((v >= 1) & (v < k)).any(), f"{stem}:{s}"  # no small count published
        for base in ("homicide_rate", "incident_rate", "violent_crime_rate"):
            flags = frame[short[f"{base}_flags"]].fillna("")
            suppressed_any = flags.str.contains("suppressed").any()
            small = ((ref[f"{base}_n"] >= 1) & (ref[f"{base}_n"] < k)).any()  # primary suppression in the run
            assert not small or suppressed_any
            for smooth in ("_eb", "_seb"):
                col = frame[short[base + smooth]]
                if suppressed_any:  # the rule: the whole group goes
                    assert col.isna().all(), f"{stem}:{base}{smooth}"
                    groups_blank += 1
                else:
                    assert col.notna().sum() == ref[base + smooth].notna().sum(), f"{stem}:{base}{smooth}"
    # the case the earlier attempt tripped on, with the run's numbers: 2021 homicides 1 … k-1 → hom_eb blank
    nb = ind.loc["neighbourhood"].xs("2021", level="period")
    assert ((nb["homicide_rate_n"] >= 1) & (nb["homicide_rate_n"] < k)).sum() > 0
    hom = pyogrio.read_dataframe(folder / "neighbourhood_2021.shp", read_geometry=False)
    assert hom["hom_eb"].isna().all() and hom["hom_seb"].isna().all()
    assert hom["inc_eb"].notna().all()  # incident counts are large: incident EB is published
    assert groups_blank > 0
    # public hot spot and impact layers carry no counts
    for stem in stems:
        layer = set(fields.loc[fields["layer"] == stem, "name"])
        assert not {"lon", "lat", "x", "y"} & layer
        if stem.startswith("hotspots_"):
            assert layer <= {"unit_id", "name", "period", "gistar_z", "gistar_bin", "lisa_quadrant",
                             "hotspot_value", "significance"}
        if stem == "impact_areas":
            assert not {"before", "after", "count"} & layer


def test_wide_shapefiles_one_layer_per_level(demo, tmp_path):
    run_dir = demo[0]
    folder, fields = _export(run_dir, tmp_path / "wide", "--format", "shp", "--shape", "wide", "--profile", "internal",
                             "--levels", "neighbourhood,district,city", "--indicators", "homicide_rate,incident_rate")
    units = _units(run_dir)
    info = _ogrinfo(folder)
    assert sorted(p.stem for p in folder.glob("*.shp")) == ["city", "district", "hotspots_district",
                                                             "hotspots_neighbourhood", "impact_areas", "neighbourhood"]
    assert set(fields["layer"]) == set(info)
    for lv in ("neighbourhood", "district", "city"):
        count, names = info[lv]
        assert count == units[lv]
        assert not [n for n in names if DIGIT_END.search(n)]
        assert names == fields.loc[fields["layer"] == lv, "short_name"].tolist()
    ind = _indicators(run_dir)
    frame = pyogrio.read_dataframe(folder / "neighbourhood.shp", read_geometry=False)
    for long in ("homicide_rate", "homicide_rate_lower", "homicide_rate_upper", "incident_rate"):
        rows = fields[(fields["layer"] == "neighbourhood") & (fields["name"] == long)]
        assert len(rows) == 5  # 2019 … 2023 → a … e
        for short, period in zip(rows["short_name"], rows["period"]):
            want = ind.loc[[("neighbourhood", u, period) for u in frame["unit_id"]], long].to_numpy(float)
            np.testing.assert_allclose(frame[short].to_numpy(float), want, rtol=RTOL, atol=ATOL, err_msg=short)
    nb = fields[(fields["layer"] == "neighbourhood") & (fields["name"] == "homicide_rate")]
    assert nb["short_name"].tolist() == [f"hom_rate_{c}" for c in "abcde"]
    assert nb["period"].tolist() == ["2019", "2020", "2021", "2022", "2023"]
