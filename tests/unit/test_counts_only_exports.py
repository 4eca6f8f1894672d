"""Run exports of a study without population or survey: the area tables and map show counts, and
no file is listed (or hashed) that was not written."""

import json

import pyogrio

from usm_geo.disclosure import area_tables
from usm_geo.export import write_run_exports
from usm_geo.indicators.report_card import report_card

from test_export_formats import _crosswalk, _measures, _units


def _counts_only():
    m = _measures()
    return m[m["measure"] == "count"].reset_index(drop=True)


def test_area_tables_show_counts_when_there_is_no_indicator():
    tables = area_tables(_units(), _counts_only(), _crosswalk(), profile="internal")
    assert tables.ids == ["count"]
    nb = tables.layers["neighbourhood"]
    # the hand-made counts: N1 12, N2 3, N3 40 in both years
    got = dict(zip(zip(nb["unit_id"], nb["period"]), nb["count"]))
    assert got == {(u, p): float(n) for p in ("2019", "2020") for u, n in (("N1", 12), ("N2", 3), ("N3", 40))}
    assert nb["count"].dtype == float and nb["count_n"].tolist() == [12, 12, 3, 3, 40, 40]
    # with any indicator present the tables show the indicators, not the counts (unchanged behaviour)
    assert "count" not in area_tables(_units(), _measures(), _crosswalk(), profile="internal").ids


def test_run_exports_of_counts_draw_a_count_map_and_list_only_written_files(tmp_path):
    card = report_card(_counts_only(), None, {}, baseline="2019", current="2020", city_name="Toy")
    assert len(card) == 0  # no rate rows (no indicator at all)
    res = write_run_exports(tmp_path, _units(), _counts_only(), _crosswalk(), profile="internal", k=5,
                            report_card=card, info={"study": {"name": "Toy"}})
    assert res["files"] == ["areas.gpkg", "map.html", "metadata.json", "report_card.csv", "report_card.json",
                            "shapefiles.zip"]
    assert all((tmp_path / f).is_file() for f in res["files"])
    html = (tmp_path / "map.html").read_text(encoding="utf-8")
    assert "Incidents (count)" in html and "a count, not a rate" in html
    meta = json.loads((tmp_path / "metadata.json").read_text(encoding="utf-8"))
    assert meta["indicators"]["count"]["kind"] == "count"
    nb = pyogrio.read_dataframe(tmp_path / "areas.gpkg", layer="neighbourhood")
    assert sorted(nb["count"].tolist()) == [3.0, 3.0, 12.0, 12.0, 40.0, 40.0]


def test_no_map_is_listed_when_there_is_nothing_to_show(tmp_path):
    m = _measures()
    nothing = m[m["measure"] == "population"]  # empty: neither an indicator nor a count
    res = write_run_exports(tmp_path, _units(), nothing, _crosswalk(), profile="internal", k=5,
                            info={"study": {"name": "Toy"}})
    assert "map.html" not in res["files"] and not (tmp_path / "map.html").exists()
    assert res["metadata"]["notes"]["html"].startswith("no map")
    assert all((tmp_path / f).is_file() for f in res["files"])
