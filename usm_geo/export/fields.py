"""The field dictionary: what every exported column means, in which unit, from which definition.

Used by the shapefile export (``fields.csv``), the GeoPackage metadata, ``metadata.json`` and the
PostGIS column comments, so every format describes a column with the same words.
"""

from __future__ import annotations

import pandas as pd

from usm_geo.disclosure.area_tables import PARTS, base_id
from usm_geo.indicators.registry import COUNT_DEFINITION


def _definition(ind: str, definitions: dict) -> dict:
    base, _ = base_id(ind)
    if ind in definitions:
        return definitions[ind]
    if base in definitions:
        return definitions[base]
    from usm_geo.indicators.registry import shipped_indicators

    shipped = shipped_indicators()
    if base in shipped:
        import dataclasses

        return dataclasses.asdict(shipped[base])
    return {}


def indicator_definitions(ids, definitions: dict | None) -> dict:
    """Definitions of the exported indicators: ``run.json["indicator_definitions"]``, else the shipped
    registry; smoothed versions name their base indicator and method."""
    definitions = definitions or {}
    out = {}
    for ind in ids:
        base, suffix = base_id(ind)
        d = dict(_definition(ind, definitions))
        if suffix and ind not in definitions:
            d["derived_from"] = base
            d["smoothing"] = ("global empirical Bayes (Marshall 1991)" if suffix == "_eb"
                              else "spatial empirical Bayes, queen contiguity")
        if not d and ind == "count":
            d = dict(COUNT_DEFINITION)
        if not d:
            d = {"id": ind, "note": "no definition recorded (e.g. a perception score from an area table)"}
        out[ind] = d
    return out


#: Columns of the hot spot and impact area layers (docs/outputs.md), for the field dictionary.
LAYER_FIELDS = {
    "count": ("incidents counted in the unit in the period", "incidents"),
    "gistar_z": ("Getis-Ord Gi* z-score (spdep/ArcGIS; the same under row-standardised weights)", ""),
    "gistar_p": ("two-sided p-value of the Gi* z-score", ""),
    "gistar_p_fdr": ("Gi* p-value adjusted for multiple testing (Benjamini-Hochberg FDR)", ""),
    "gistar_bin": ("hot (+) / cold (-) spot class: 3, 2, 1 at 99, 95, 90 % confidence after FDR; 0 not significant", ""),
    "lisa_i": ("local Moran's I", ""),
    "lisa_z": ("z-score of local Moran's I (n-1 variance divisor, as esda/GeoDa)", ""),
    "lisa_p_sim": ("pseudo p-value of local Moran's I from conditional permutations", ""),
    "lisa_quadrant": ("Moran scatterplot quadrant: HH, LH, LL, HL or island", ""),
    "n_neighbours": ("number of neighbours in the spatial weights", "units"),
    "area": ("impact area: treated, buffer (displacement ring) or control", ""),
    "before": ("incidents in the area before the intervention", "incidents"),
    "after": ("incidents in the area after the intervention starts", "incidents"),
    "area_km2": ("area of the polygon", "km²"),
}


def field_dictionary(columns, definitions: dict) -> pd.DataFrame:
    """name, description, unit of every column of a level table."""
    fixed = {
        "level": ("unit level (H3 levels are h3_<res>; the top level is city)", ""),
        "unit_id": ("unit id (text)", ""),
        "name": ("unit name", ""),
        "period": ("period label (2019, 2019-Q1, 2019-03 or START/END)", ""),
        **LAYER_FIELDS,
    }
    rows = []
    for col in columns:
        if col in fixed:
            rows.append((col, *fixed[col]))
            continue
        part = next((p for p in PARTS if col.endswith(p) and col[: -len(p)] in definitions), "")
        ind = col[: -len(part)] if part else col
        d = definitions.get(ind, {})
        kind, name = d.get("kind"), d.get("name") or ind
        if d.get("smoothing"):
            name = f"{name}, smoothed: {d['smoothing']}"
        unit = (f"per {float(d.get('per') or 1000):,.0f} residents" if kind == "rate"
                else "proportion (0-1)" if kind == "share" else "")
        if part == "":
            rows.append((col, name, unit))
        elif part == "_lower":
            rows.append((col, f"lower bound of the 95 % interval: {name}", unit))
        elif part == "_upper":
            rows.append((col, f"upper bound of the 95 % interval: {name}", unit))
        elif part == "_n":
            rows.append((col, f"{'incidents counted (numerator)' if kind == 'rate' else 'respondents'}: {name}",
                         "incidents" if kind == "rate" else "respondents" if kind == "share" else ""))
        else:
            rows.append((col, f"flags, ';'-separated (docs/outputs.md): {name}", ""))
    return pd.DataFrame(rows, columns=["name", "description", "unit"])


def fields_meta(dictionary: pd.DataFrame, shp_fields: pd.DataFrame | None) -> list:
    """metadata.json's field list; with shapefiles, each field's short name (period columns of the wide
    layout excepted: fields.csv lists those)."""
    short = {}
    if shp_fields is not None:
        plain = shp_fields[shp_fields["period"] == ""]
        short = dict(zip(plain["name"], plain["short_name"]))
    return [{**rec, **({"shapefile_name": short[rec["name"]]} if rec["name"] in short else {})}
            for rec in dictionary.to_dict(orient="records")]
