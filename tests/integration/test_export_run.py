"""`export_run` on the Demo City run: every written file is opened by GDAL's own tools (ogrinfo,
gdalinfo — Debian gdal-bin, not the GDAL inside pyogrio/rasterio), GeoParquet by pyarrow and a
geopandas round trip (Debian's GDAL has no Parquet driver), an export killed by SIGKILL leaves the
previous one intact, and the public profile publishes no coordinates and no counts 1 … k−1."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
from shared_data import IN_CI

from usm_geo.export import FORMATS, export_run, read_table
from usm_geo.indicators.report_card import COLUMNS as CARD_COLUMNS

GDAL_ENV = {**os.environ, "GDAL_PAM_ENABLED": "NO"}  # never write .aux.xml files beside the outputs
INTERNAL_PERIODS = ["2023"]  # one period keeps the GeoJSON small; the public export has all five
INTERNAL_CRS = 3035


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if IN_CI:
            pytest.fail(f"{tool} is missing (CI=true: .ci/run installs gdal-bin)")
        pytest.skip(f"{tool} (gdal-bin) is not installed")
    return path


def ogrinfo(path: str) -> dict[str, dict]:
    """{layer: {"epsg": int | None, "count": int, "fields": [names]}} parsed from `ogrinfo -so -al`."""
    res = subprocess.run([_need("ogrinfo"), "-ro", "-so", "-al", str(path)], capture_output=True, text=True,
                         env=GDAL_ENV, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    layers = {}
    for block in res.stdout.split("Layer name: ")[1:]:
        name = block.splitlines()[0].strip()
        srs = block.split("Layer SRS WKT:", 1)[1].split("Data axis to CRS axis mapping", 1)[0] if "Data axis" in block else ""
        codes = re.findall(r'ID\["EPSG",(\d+)\]\]\s*$', srs)
        fields_part = block.split("Geometry Column", 1)[1] if "Geometry Column" in block else block
        fields = re.findall(r"^(\S+): (?:String|Integer|Integer64|Real|Date|DateTime|Time|Binary)\b", fields_part, re.MULTILINE)
        layers[name] = {"epsg": int(codes[-1]) if codes else None,
                        "count": int(re.search(r"Feature Count: (\d+)", block).group(1)), "fields": fields}
    return layers


def gdalinfo(path: str) -> dict:
    res = subprocess.run([_need("gdalinfo"), str(path)], capture_output=True, text=True, env=GDAL_ENV, timeout=60,
                         check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    wkt = res.stdout.split("Coordinate System is:", 1)[1].split("Data axis to CRS axis mapping", 1)[0]
    size = tuple(int(v) for v in re.search(r"Size is (\d+), (\d+)", res.stdout).groups())
    return {"epsg": int(re.findall(r'ID\["EPSG",(\d+)\]\]\s*$', wkt)[-1]), "size": size, "text": res.stdout}


@pytest.fixture(scope="module")
def run_dir(demo):
    return demo[0]


@pytest.fixture(scope="module")
def run_info(run_dir):
    return json.loads((run_dir / "run.json").read_text())


@pytest.fixture(scope="module")
def internal(run_dir, tmp_path_factory):
    """Every format, internal profile, the current period, reprojected to EPSG:3035."""
    out = tmp_path_factory.mktemp("export") / "internal"
    res = export_run(run_dir, out, formats=FORMATS, profile="internal", periods=INTERNAL_PERIODS,
                     crs=f"EPSG:{INTERNAL_CRS}")
    return out, res


#: GeoJSON is left out of the public export to keep the suite fast: it is written from the same
#: frames as GeoParquet (checked here) and opened with ogrinfo in the internal export; the h3 level
#: alone is 70 MB of GeoJSON, which ogrinfo needs ~5 s to scan.
PUBLIC_FORMATS = tuple(f for f in FORMATS if f != "geojson")


@pytest.fixture(scope="module")
def public(run_dir, tmp_path_factory):
    """Every format but GeoJSON, public profile (the default), every period, working CRS."""
    pytest.importorskip("usm_geo.disclosure")
    out = tmp_path_factory.mktemp("export") / "public"
    t0 = time.perf_counter()
    res = export_run(run_dir, out, formats=PUBLIC_FORMATS)
    res["measured_s"] = time.perf_counter() - t0
    return out, res


def _expected_columns(run_dir) -> list[str]:
    with open(run_dir / "indicators.csv", encoding="utf-8") as f:
        return [h.strip('"') for h in f.readline().strip().split(",")]


def check_folder_with_gdal(out: Path, res: dict, run_dir: Path, info: dict, *, epsg: int, periods: int, public: bool):
    """Open every file of an export folder with ogrinfo/gdalinfo (or pyarrow / json)."""
    levels = pyogrio.list_layers(run_dir / "units.gpkg")[:, 0].tolist()  # finest first
    counts = {lv: n * periods for lv, n in info["units"].items()}
    columns = set(_expected_columns(run_dir))
    files = sorted(p.name for p in out.iterdir())
    assert files == res["files"]
    seen = set()

    # GeoPackage: a layer per level, hot spots and impact areas
    gp = ogrinfo(out / "areas.gpkg")
    hot = [f"hotspots_{lv}" for lv in levels if lv != "city"]
    assert list(gp) == levels + hot + ["impact_areas"]
    for lv in levels:
        assert gp[lv]["epsg"] == epsg and gp[lv]["count"] == counts[lv], lv
        assert set(gp[lv]["fields"]) == columns, lv  # the columns of indicators.csv
    for layer in hot:
        assert gp[layer]["epsg"] == epsg and gp[layer]["count"] == info["units"][layer[9:]]
        if public:
            # no counts or p-values; the value analysed and the rule re-applied (public_rule) are stated
            assert gp[layer]["fields"] == ["unit_id", "name", "period", "gistar_z", "gistar_bin", "lisa_quadrant",
                                           "hotspot_value", "significance"]
        else:
            assert "count" in gp[layer]["fields"] and "gistar_p_fdr" in gp[layer]["fields"]
    assert gp["impact_areas"]["count"] == 3 and gp["impact_areas"]["epsg"] == epsg
    seen.add("areas.gpkg")

    # shapefiles in one zip, opened through /vsizip/: a layer per level and period (the default "long"
    # shape), one feature per unit, hot spot and impact layers too; field names as fields.csv says
    with zipfile.ZipFile(out / "shapefiles.zip") as z:
        fields = pd.read_csv(io.BytesIO(z.read("fields.csv")), dtype=str, keep_default_na=False)
        stems = sorted({n.rsplit(".", 1)[0] for n in z.namelist() if n.endswith(".shp")})
        for stem in stems:
            assert z.read(f"{stem}.cpg").decode().strip() == "UTF-8" and f"{stem}.prj" in z.namelist()
    area_fields = fields[~fields["layer"].str.startswith(("hotspots_", "impact_areas"))]
    assert set(area_fields["name"]) == columns and fields["short_name"].str.len().max() <= 10
    assert not fields["short_name"].str.contains(r"\d$").any()
    shp = ogrinfo(f"/vsizip/{out / 'shapefiles.zip'}")
    assert sorted(shp) == stems
    meta_periods = json.loads((out / "metadata.json").read_text())["periods"]
    for lv in levels:
        for p in meta_periods:
            layer = shp[f"{lv}_{p}"]
            assert layer["epsg"] == epsg and layer["count"] == info["units"][lv]
            assert layer["fields"] == fields.loc[fields["layer"] == f"{lv}_{p}", "short_name"].tolist()
    assert {s for s in stems if s.startswith("hotspots_")} and "impact_areas" in stems
    seen.add("shapefiles.zip")

    # GeoJSON: EPSG:4326 whatever the export CRS
    for lv in levels if "geojson" in res["formats"] else []:
        name = f"areas_{lv}.geojson"
        gj = ogrinfo(out / name)
        assert list(gj) == [f"areas_{lv}"]
        layer = gj[f"areas_{lv}"]
        assert layer["epsg"] == 4326 and layer["count"] == counts[lv] and set(layer["fields"]) == columns
        seen.add(name)

    # GeoParquet: pyarrow (geo metadata, CRS, rows) and a geopandas round trip
    gpkg_city = pyogrio.read_dataframe(out / "areas.gpkg", layer="city")
    for lv in levels:
        name = f"areas_{lv}.parquet"
        pf = pq.ParquetFile(out / name)
        geo = json.loads(pf.schema_arrow.metadata[b"geo"])
        col = geo["columns"][geo["primary_column"]]
        assert col["encoding"] == "WKB" and col["crs"]["id"] == {"authority": "EPSG", "code": epsg}
        assert pf.metadata.num_rows == counts[lv]
        back = gpd.read_parquet(out / name)
        assert back.crs.to_epsg() == epsg and len(back) == counts[lv] and set(back.columns) - {"geometry"} == columns
        if lv == "city":
            assert shapely.equals_exact(back.geometry.to_numpy(), gpkg_city.geometry.to_numpy(), tolerance=1e-6).all()
        seen.add(name)

    # CSV tables through GDAL's CSV driver
    csv = ogrinfo(out / "indicators.csv")["indicators"]
    assert csv["count"] == sum(counts.values()) and set(csv["fields"]) == columns
    card = json.loads((out / "report_card.json").read_text())
    rc = ogrinfo(out / "report_card.csv")["report_card"]
    assert rc["count"] == len(card) > 0 and rc["fields"] == CARD_COLUMNS
    seen |= {"indicators.csv", "report_card.csv"}

    # the KDE surface with gdalinfo: the working CRS (rasters are not reprojected)
    tif = gdalinfo(out / "kde.tif")
    assert tif["epsg"] == int(info["working_crs"].split(":")[1])
    assert tif["size"] == gdalinfo(run_dir / "kde.tif")["size"]
    seen.add("kde.tif")

    # the map: the same page build_map makes of the run in this profile (tests/browser open it)
    from usm_geo.maps import build_map, load_run

    html = (out / "map.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<title>Demo City — " in html
    if periods == len(INTERNAL_PERIODS) and not public:
        assert f", {INTERNAL_PERIODS[-1]}</title>" in html
    else:
        assert html == build_map(load_run(run_dir, profile="public"))
    seen.add("map.html")

    for name in ("metadata.json", "run.json", "report_card.json"):
        json.loads((out / name).read_text(encoding="utf-8"))
        seen.add(name)
    assert seen == set(files), set(files) - seen  # every file was opened
    assert not list(out.glob("*.aux.xml"))


def test_internal_export_opens_with_gdal(internal, run_dir, run_info):
    out, res = internal
    check_folder_with_gdal(out, res, run_dir, run_info, epsg=INTERNAL_CRS, periods=len(INTERNAL_PERIODS), public=False)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["profile"] == "internal" and meta["periods"] == INTERNAL_PERIODS
    assert meta["crs"] == {"layers": f"EPSG:{INTERNAL_CRS}", "geojson": "EPSG:4326", "kde.tif": run_info["working_crs"]}
    assert meta["software"] == run_info["packages"] and meta["inputs"] == run_info["inputs"]
    assert meta["indicators"]["homicide_rate"]["sdg"] == "16.1.1"
    assert meta["indicators"]["incident_rate_seb"]["derived_from"] == "incident_rate"
    for name, digest in meta["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert (out / "run.json").read_bytes() == (run_dir / "run.json").read_bytes()


def test_internal_values_match_the_run(internal, run_dir):
    out, _ = internal
    ind = read_table(run_dir / "indicators.csv")
    ind = ind[ind["period"].isin(INTERNAL_PERIODS)]
    mine = read_table(out / "indicators.csv")
    key = ["level", "unit_id", "period"]
    merged = mine.merge(ind, on=key, suffixes=("", "_run"))
    assert len(merged) == len(mine) == len(ind)
    for col in ("incident_rate", "incident_rate_upper", "violent_crime_rate_n", "safe_after_dark_share"):
        np.testing.assert_allclose(merged[col].astype(float), merged[f"{col}_run"].astype(float), rtol=1e-12)
    card = pd.DataFrame(json.loads((out / "report_card.json").read_text())).set_index("indicator")
    prog = read_table(run_dir / "progress.csv")
    city = prog[(prog["level"] == "city") & (prog["indicator"] == "violent_crime_rate")].iloc[0]
    assert card.loc["violent_crime_rate", "change"] == pytest.approx(city["change"], rel=1e-12)
    assert card.loc["violent_crime_rate", "target_status"] == city["status"]
    assert all(list(rec) == sorted(CARD_COLUMNS) for rec in json.loads((out / "report_card.json").read_text()))


def test_export_refuses_to_replace_what_it_should_not(run_dir, tmp_path):
    from usm_geo.errors import OutputError, UsmGeoError

    with pytest.raises(OutputError, match="would replace the run folder"):
        export_run(run_dir, run_dir)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "thesis.docx").write_text("precious")
    with pytest.raises(OutputError, match="did not write"):
        export_run(run_dir, docs, profile="internal")
    assert (docs / "thesis.docx").read_text() == "precious"
    with pytest.raises(UsmGeoError, match="names a folder"):
        export_run(run_dir, tmp_path / "areas.gpkg")
    with pytest.raises(UsmGeoError, match="unknown format 'xls'"):
        export_run(run_dir, tmp_path / "x", formats=("xls",))


KILLER = """
import sys
from usm_geo.export import export_run
export_run(sys.argv[1], sys.argv[2], formats=("gpkg", "shp", "geojson"), profile="internal")
"""


def test_killed_export_leaves_previous_files_intact(internal, run_dir, tmp_path):
    out = tmp_path / "exp"
    shutil.copytree(internal[0], out)  # a previous export
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
    proc = subprocess.Popen([sys.executable, "-c", KILLER, str(run_dir), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            stages = list(tmp_path.glob(".exp.tmp-*"))
            if stages and any(stages[0].iterdir()):  # its staging folder holds a first (partial) file
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the export was not killed midway: {err.decode()[-2000:]}"
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
    assert after == before  # the previous export, untouched
    # the next export replaces it whole and removes the dead process's staging folder
    res = export_run(run_dir, out, formats=("csv",), profile="internal", levels=["district"])
    assert sorted(p.name for p in out.iterdir()) == res["files"]
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]


def _count_columns(names) -> list[str]:
    return [c for c in names if c.endswith("_n") or c in ("n", "count", "before", "after")]


def _no_small_counts(frame: pd.DataFrame, k: int, where: str) -> int:
    cols = _count_columns(frame.columns)
    for c in cols:
        v = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        small = (v >= 1) & (v < k)
        assert not small.any(), f"{where}: column {c} holds {int(small.sum())} counts in 1…{k - 1}"
    return len(cols)


def test_public_export(public, run_dir, run_info):
    out, res = public
    periods = len(json.loads((out / "metadata.json").read_text())["periods"])
    check_folder_with_gdal(out, res, run_dir, run_info, epsg=int(run_info["working_crs"].split(":")[1]),
                           periods=periods, public=True)
    k = res["k"]
    assert k == run_info["outputs"]["suppression_threshold"]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["profile"] == "public" and meta["suppression"]["k"] == k
    forbidden = {"lon", "lat", "x", "y", "longitude", "latitude"}
    checked = 0
    for layer in pyogrio.list_layers(out / "areas.gpkg")[:, 0]:
        frame = pyogrio.read_dataframe(out / "areas.gpkg", layer=layer, read_geometry=False)
        assert not forbidden & {c.lower() for c in frame.columns}, layer
        assert "count" not in frame.columns or layer == "impact_areas"
        checked += _no_small_counts(frame, k, f"areas.gpkg:{layer}")
    with zipfile.ZipFile(out / "shapefiles.zip") as z:
        fields = pd.read_csv(io.BytesIO(z.read("fields.csv")), dtype=str, keep_default_na=False)
        names = [n for n in z.namelist() if n.endswith(".shp")]
    full = dict(zip(fields["short_name"], fields["name"]))
    for name in names:
        frame = pyogrio.read_dataframe(f"/vsizip/{out / 'shapefiles.zip'}/{name}", read_geometry=False).rename(columns=full)
        assert not forbidden & {c.lower() for c in frame.columns}
        checked += _no_small_counts(frame, k, name)
    for path in sorted(out.glob("areas_*.parquet")) + sorted(out.glob("areas_*.geojson")):
        cols = pyogrio.read_info(path)["fields"] if path.suffix == ".geojson" else pq.read_schema(path).names
        assert not forbidden & {c.lower() for c in cols}, path.name
        want = _count_columns(cols)
        frame = (pd.read_parquet(path, columns=want) if path.suffix == ".parquet"
                 else pyogrio.read_dataframe(path, columns=want, read_geometry=False))
        checked += _no_small_counts(frame, k, path.name)
    for name in ("indicators.csv", "report_card.csv"):
        frame = pd.read_csv(out / name, dtype=str, keep_default_na=False)
        assert not forbidden & {c.lower() for c in frame.columns}
        checked += _no_small_counts(frame, k, name)
    assert checked > 40  # the count columns were really looked at
    # the KDE: no visible cell below what k events at one point give
    import rasterio

    with rasterio.open(out / "kde.tif") as src:
        values = src.read(1)
    threshold = meta["notes"]["kde"]["masked_below"]
    assert threshold > 0 and np.nanmin(values) >= threshold
    print(f"\npublic export of the Demo City (every format but GeoJSON): {res['measured_s']:.1f} s")
