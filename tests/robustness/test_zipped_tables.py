"""A CSV inside a zip archive (portals zip their exports) is read from the archive, not taken for a
zipped shapefile; archives with several tables, or none, get an answer naming what they hold."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd

from usm_geo.errors import InputFileError

from .helpers import assert_error, good_rows, incidents_csv, run, study_file

LONDON = Path(__file__).resolve().parents[1] / "data" / "city-of-london" / "2019-01-city-of-london-street.csv"


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_a_zipped_police_uk_csv_is_read_like_the_csv(tmp_path):
    _zip(tmp_path / "street.zip", {"2019-01/2019-01-city-of-london-street.csv": LONDON.read_bytes(),
                                   "__MACOSX/2019-01/._2019-01-city-of-london-street.csv": b"\x00\x05"})
    body = 'lon = "Longitude"\nlat = "Latitude"\ndatetime = "Month"\ncategory = "Crime type"'
    zipped = run(study_file(tmp_path, incidents=f'path = "street.zip"\n{body}', boundaries=False))
    (tmp_path / "plain.csv").write_bytes(LONDON.read_bytes())
    plain = run(study_file(tmp_path, incidents=f'path = "plain.csv"\n{body}', boundaries=False, name="plain.toml"))
    raw = pd.read_csv(LONDON)
    assert zipped.ledger.totals()["incidents"] == {"read": len(raw), "used": int(raw.Longitude.notna().sum()),
                                                   "dropped": int(raw.Longitude.isna().sum())}
    assert zipped.incidents.equals(plain.incidents)


def test_an_archive_with_several_tables_asks_for_one_and_layer_picks_it(tmp_path):
    incidents_csv(tmp_path, *good_rows(2))
    data = (tmp_path / "incidents.csv").read_bytes()
    _zip(tmp_path / "both.zip", {"jan.csv": data, "feb.csv": data + b"3,15.07,52.40,2021-05-03,theft\n"})
    assert_error(InputFileError, study_file(tmp_path, incidents='path = "both.zip"'), "both.zip: the archive holds 2 tables",
                 'layer = "...": feb.csv, jan.csv')
    intake = run(study_file(tmp_path, incidents='path = "both.zip"\nlayer = "feb"'))
    assert intake.ledger.totals()["incidents"]["read"] == 3


def test_an_archive_without_a_table_or_shapefile_says_what_it_holds(tmp_path):
    _zip(tmp_path / "odd.zip", {"readme.pdf": b"%PDF-1.4"})
    assert_error(InputFileError, study_file(tmp_path, incidents='path = "odd.zip"'),
                 "odd.zip: the archive holds no .shp file (it holds: readme.pdf)", "end in .csv or .tsv")
    assert_error(InputFileError, study_file(tmp_path, incidents='path = "odd.zip"\nformat = "csv"'),
                 "odd.zip: the archive holds no .csv or .tsv file (it holds: readme.pdf)", "unzip it")
