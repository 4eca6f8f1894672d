"""The shapefile export on a real run: Chicago's aggravated assaults 2018–2019 over the 77 community
areas (../shared/data; `shared_data.chicago_rate_run`) → `usm-geo export --format SHP`, internal and
public. Checked: 77 features per layer (ogrinfo and pyogrio), readable names, the community names
round-tripping through the UTF-8 DBF (.cpg), values equal to the run's indicators.csv to the DBF's
15 written decimals (``Real (24.15)``: atol = rtol = 1e-15)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import zipfile

import numpy as np
import pandas as pd
import pyogrio
import pytest
from click.testing import CliRunner
from shared_data import CHICAGO_AREAS, chicago_rate_run, need_shared

pytestmark = pytest.mark.realdata
ATOL = RTOL = 1e-15


@pytest.fixture(scope="module")
def chicago(tmp_path_factory):
    from usm_geo.cli import main

    base = tmp_path_factory.mktemp("chicago-shp")
    run_dir = chicago_rate_run(base, 2018)
    out = {}
    for profile in ("internal", "public"):
        target = base / profile
        r = CliRunner().invoke(main, ["export", str(run_dir), "--out", str(target), "--format", "SHP",
                                      "--profile", profile])
        assert r.exit_code == 0, r.output
        with zipfile.ZipFile(target / "shapefiles.zip") as z:
            z.extractall(target / "unzipped")
            fields = pd.read_csv(io.BytesIO(z.read("fields.csv")), dtype=str, keep_default_na=False)
        out[profile] = (target / "unzipped", fields)
    return run_dir, out


def _source_names():
    cca = pyogrio.read_dataframe(need_shared(*CHICAGO_AREAS), layer="Chicago_2020", read_geometry=False)
    return dict(zip(cca["area_num_1"].astype(float).astype(int).astype(str), cca["community"]))


@pytest.mark.parametrize("profile", ["internal", "public"])
def test_77_features_readable_names_every_field_listed(chicago, profile):
    run_dir, out = chicago
    folder, fields = out[profile]
    stems = sorted(p.stem for p in folder.glob("*.shp"))
    assert {"community_area_2018", "community_area_2019", "city_2018", "city_2019"} <= set(stems)
    assert set(fields["layer"]) == set(stems)
    exe = shutil.which("ogrinfo")
    if exe is None:
        pytest.skip("ogrinfo (gdal-bin) is not installed")
    for stem in stems:
        res = subprocess.run([exe, "-ro", "-so", "-al", str(folder / f"{stem}.shp")], capture_output=True, text=True,
                             timeout=120, check=False)
        assert res.returncode == 0, res.stderr
        names = re.findall(r"^(\S+): (?:String|Integer|Integer64|Real|Date)\b", res.stdout, re.MULTILINE)
        assert names == fields.loc[fields["layer"] == stem, "short_name"].tolist()
        assert not [n for n in names if re.search(r"\d$", n)]
        count = int(re.search(r"Feature Count: (\d+)", res.stdout).group(1))
        if stem.startswith("community_area_") or stem.startswith("hotspots_community_area"):
            assert count == 77, stem
        elif stem.startswith("city_"):
            assert count == 1
    area = fields[fields["layer"] == "community_area_2019"].set_index("name")["short_name"]
    assert area[["incident_rate", "incident_rate_lower", "incident_rate_upper", "incident_rate_n",
                 "incident_rate_eb"]].tolist() == ["inc_rate", "inc_lo", "inc_hi", "inc_n", "inc_eb"]
    assert (folder / "community_area_2019.cpg").read_text().strip() == "UTF-8"


def test_names_round_trip_through_pyogrio_and_ogrinfo(chicago):
    """The 77 community names as the source spells them (all ASCII in this file; 'O'HARE' has an
    apostrophe), read back by pyogrio and by ogrinfo from the UTF-8 DBF."""
    _, out = chicago
    folder, _ = out["public"]
    source = _source_names()
    frame = pyogrio.read_dataframe(folder / "community_area_2019.shp", read_geometry=False)
    assert len(frame) == 77 and frame["unit_id"].is_unique
    assert dict(zip(frame["unit_id"], frame["name"])) == source
    exe = shutil.which("ogrinfo")
    if exe is None:
        pytest.skip("ogrinfo (gdal-bin) is not installed")
    res = subprocess.run([exe, "-ro", "-q", str(folder / "community_area_2019.shp"), "community_area_2019",
                          "-where", "unit_id = '76'"], capture_output=True, timeout=120, check=False)
    assert res.returncode == 0
    assert f"name (String) = {source['76']}".encode("utf-8") in res.stdout


@pytest.mark.parametrize("profile", ["internal", "public"])
def test_values_equal_the_runs_indicators(chicago, profile):
    run_dir, out = chicago
    folder, fields = out[profile]
    ind = pd.read_csv(run_dir / "indicators.csv", dtype={"unit_id": str, "period": str, "level": str},
                      low_memory=False).set_index(["level", "unit_id", "period"])
    k = 5  # chicago_rate_run keeps the default suppression threshold
    for period in ("2018", "2019"):
        stem = f"community_area_{period}"
        frame = pyogrio.read_dataframe(folder / f"{stem}.shp", read_geometry=False)
        ref = ind.loc[[("community_area", u, period) for u in frame["unit_id"]]]
        f = fields[fields["layer"] == stem].set_index("name")["short_name"]
        for long in ("incident_rate", "incident_rate_lower", "incident_rate_upper", "incident_rate_n",
                     "incident_rate_eb", "incident_rate_eb_lower", "incident_rate_seb"):
            got, want = frame[f[long]].to_numpy(float), ref[long].to_numpy(float)
            if profile == "internal":
                np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=f"{stem}:{long}")
            else:
                shown = ~np.isnan(got)
                np.testing.assert_allclose(got[shown], want[shown], rtol=RTOL, atol=ATOL, err_msg=f"{stem}:{long}")
                # blanks only where the run had a count 1 … k-1 or complementary suppression flagged it
                flagged = frame[f["incident_rate_flags"]].fillna("").str.contains("suppressed").to_numpy()
                if not long.endswith(("_eb", "_eb_lower", "_seb")):
                    assert np.array_equal(~shown, flagged | np.isnan(want)), f"{stem}:{long}"
        n = ref["incident_rate_n"]
        assert n.sum() > 10_000  # thousands of assaults a year: a real run, not an empty one
        if profile == "public":
            v = pd.to_numeric(frame[f["incident_rate_n"]], errors="coerce")
            assert not ((v >= 1) & (v < k)).any()
