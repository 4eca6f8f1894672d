"""Three monthly police.uk files of the City of London Police (tests/data/city-of-london, see its
SOURCE.md) in one study: two as a list ``path``, one as a second ``[[inputs.incidents]]``, run end to
end with `usm-geo run` on H3 cells. Counts per cell × month are checked against h3-py on the raw
files; the ledger lists each file under its own name with read = used + dropped."""

from __future__ import annotations

import json
from pathlib import Path

import h3
import pandas as pd
import pytest
from click.testing import CliRunner

from usm_geo.cli import main

DATA = Path(__file__).resolve().parents[1] / "data" / "city-of-london"
FILES = [DATA / f"2019-0{m}-city-of-london-street.csv" for m in (1, 2, 3)]
KEYS = '''lon = "Longitude"
lat = "Latitude"
datetime = "Month"
category = "Crime type"
id = "Crime ID"'''

STUDY = f"""
[study]
name = "City of London 2019 Q1"
timezone = "Europe/London"

[[inputs.incidents]]
path = ["{FILES[0].as_posix()}", "{FILES[1].as_posix()}"]
{KEYS}

[[inputs.incidents]]
path = "{FILES[2].as_posix()}"
{KEYS}

[units]
h3_resolution = [8]

[periods]
frequency = "month"
"""


@pytest.fixture(scope="module")
def london_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("city_of_london")
    (folder / "study.toml").write_text(STUDY, encoding="utf-8")
    out = folder / "out"
    result = CliRunner().invoke(main, ["run", str(folder / "study.toml"), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def _raw() -> pd.DataFrame:
    return pd.concat([pd.read_csv(f).assign(file=f.name) for f in FILES], ignore_index=True)


def test_counts_per_cell_and_month_match_h3_on_the_raw_files(london_run):
    raw = _raw()
    located = raw[raw.Longitude.notna() & raw.Latitude.notna()].copy()
    located["cell"] = [h3.latlng_to_cell(la, lo, 8) for la, lo in zip(located.Latitude, located.Longitude)]
    expected = located.groupby(["cell", "Month"]).size()
    expected.index.names = ["unit_id", "period"]
    measures = pd.read_csv(london_run / "measures.csv", dtype={"unit_id": str, "period": str})
    got = measures[(measures.level == "h3_8") & (measures.measure == "count") & (measures.category == "all")]
    got = got.set_index(["unit_id", "period"])["value"]
    got = got[got > 0]
    assert got.astype(int).sort_index().equals(expected.sort_index())
    city = measures[(measures.level == "city") & (measures.measure == "count") & (measures.category != "all")]
    by_type = city.groupby("category")["value"].sum().astype(int)
    assert by_type.sort_index().equals(located.groupby("Crime type").size().rename_axis("category").sort_index().rename("value"))


def test_each_file_is_its_own_ledger_source(london_run):
    raw = _raw()
    info = json.loads((london_run / "run.json").read_text(encoding="utf-8"))
    ledger = pd.read_csv(london_run / "ledger.csv", dtype={"detail": str})
    for f in FILES:
        name = f"incidents/{f.name}"
        rows = raw[raw.file == f.name]
        missing = int((rows.Longitude.isna() | rows.Latitude.isna()).sum())
        assert info["sources"][name] == {"read": len(rows), "used": len(rows) - missing, "dropped": missing}
        mine = ledger[ledger.source == name]
        assert (mine[mine.status == "dropped"].reason == "missing_coordinates").sum() == missing
        # exact duplicates are found within each file (police.uk: same month, point and type, no id)
        assert (mine.reason == "duplicate").sum() == int(rows.drop(columns="file").duplicated().sum())
        assert info["inputs"][name]["file"] == str(f)
    assert "incidents" not in info["sources"]
    total = sum(t["read"] for n, t in info["sources"].items() if n.startswith("incidents/"))
    assert total == len(raw) == 617 + 688 + 879


def test_ledger_rows_carry_the_record_id_and_repeated_ids_are_listed(london_run):
    ledger = pd.read_csv(london_run / "ledger.csv", dtype={"detail": str, "record_id": str}, keep_default_na=False)
    assert list(ledger.columns) == ["source", "row", "status", "reason", "detail", "record_id", "events"]
    raw = pd.read_csv(FILES[0], dtype=str, keep_default_na=False)
    mine = ledger[ledger.source == f"incidents/{FILES[0].name}"]
    dropped = mine[mine.reason == "missing_coordinates"]
    assert dropped.record_id.tolist() == raw["Crime ID"].iloc[dropped.row - 1].tolist()
    # independent: among located records that are not exact duplicates, ids seen before
    located = raw[(raw.Longitude != "") & ~raw.duplicated()]
    named = located[located["Crime ID"] != ""]
    again = named[named["Crime ID"].duplicated()]
    listed = mine[mine.reason == "duplicate_id"]
    assert len(again) == 3  # 4 ids repeat in the file; one repeat has no location and is dropped
    assert listed.row.tolist() == (again.index + 1).tolist()
    assert set(listed.status) == {"kept"}
    first_row = {c: i + 1 for i, c in zip(named.index[::-1], named["Crime ID"][::-1])}  # the earliest row of each id
    assert listed.detail.tolist() == [f"same id as row {first_row[c]}" for c in again["Crime ID"]]
    assert set(listed.record_id) == set(again["Crime ID"])


def test_map_and_every_layer_pass_gdal(london_run, tmp_path):
    """Issue #18 "Done when": the three-file run writes a map and every GeoPackage layer, and the
    shapefiles `usm-geo export` writes from the run, pass GDAL's `ogrinfo -so -al`."""
    import subprocess
    import zipfile

    html = (london_run / "map.html").read_text(encoding="utf-8")
    assert len(html) > 10_000 and "h3_8" in html
    gpkgs = sorted(london_run.glob("*.gpkg"))
    assert {"units.gpkg", "areas.gpkg"} <= {p.name for p in gpkgs}
    for gpkg in gpkgs:
        proc = subprocess.run(["ogrinfo", "-so", "-al", str(gpkg)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "Feature Count" in proc.stdout
    exp = tmp_path / "exp"
    result = CliRunner().invoke(main, ["export", str(london_run), "--format", "shp", "--out", str(exp)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(exp / "shapefiles.zip") as z:
        z.extractall(tmp_path / "shp")
    shps = sorted((tmp_path / "shp").glob("*.shp"))
    assert shps
    for shp in shps:
        proc = subprocess.run(["ogrinfo", "-so", "-al", str(shp)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "Feature Count" in proc.stdout
