"""Population table on real data (../shared/data; skipped when absent, fails under CI=true).

Northumbria: 177 ward populations (ONS mid-2020, keyed by gss_code) against the 177 wards of the
December 2022 boundaries. Four wards were re-coded between the vintages (same names, new codes), so
four table rows name no 2022 ward and four 2022 wards have no population. Expectations come from
pandas on the raw files, not from usm_geo.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shared_data import need_shared

from usm_geo.intake.ledger import Ledger
from usm_geo.population import from_table

pytestmark = pytest.mark.realdata

OLD_CODES = {"E05009105": "Bothal", "E05009138": "Newsham", "E05009140": "Pegswood",
             "E05009150": "Seghill with Seaton Delaval"}
NEW_CODES = {"E05013270": "Newsham", "E05013271": "Seghill with Seaton Delaval",
             "E05013862": "Bothal", "E05013863": "Pegswood"}


def test_northumbria_ward_population_four_unmatched_wards():
    xlsx = need_shared("uk-northumbria-asb-2022", "northumbria_ward_pop.xlsx")
    gpkg = need_shared("uk-northumbria-asb-2022", "northumbria_wards.gpkg")
    wards = gpd.read_file(gpkg).rename(columns={"ward_code": "unit_id", "ward_name": "name"})
    wards = wards.sort_values("unit_id").reset_index(drop=True)
    raw = pd.read_excel(xlsx)
    assert len(raw) == 177 and len(wards) == 177

    ledger = Ledger()
    out = from_table(xlsx, wards, id_column="gss_code", value_column="population", ledger=ledger,
                     source="ward_population")

    assert len(out) == 177 and out["unit_id"].tolist() == sorted(wards["unit_id"])
    missing = out[out["flags"].str.contains("population_missing")]
    assert dict(zip(missing["unit_id"], wards.set_index("unit_id").loc[missing["unit_id"], "name"])) == NEW_CODES
    assert missing["population"].isna().all()
    # The other 173 wards carry exactly the table's values.
    matched = raw[raw["gss_code"].isin(wards["unit_id"])].set_index("gss_code")["population"]
    got = out.set_index("unit_id")["population"]
    assert len(matched) == 173
    np.testing.assert_array_equal(got.loc[matched.index].to_numpy(), matched.to_numpy(dtype=float))
    assert out.attrs["total"] == matched.sum()

    frame = ledger.to_frame()
    unknown = frame[frame["reason"] == "unknown_unit"]
    assert set(raw.loc[unknown["row"].to_numpy() - 1, "gss_code"]) == set(OLD_CODES)
    assert (unknown["status"] == "dropped").all()
    assert ledger.totals()["ward_population"] == {"read": 177, "used": 173, "dropped": 4}
