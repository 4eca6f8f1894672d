"""Negative-binomial model of area counts (issue 21 point 4) against R MASS::glm.nb and spdep.

Data: ../shared/data/pysal-builtin-crime-examples/stl — homicides 1988–93 (HC8893) in 78 counties
around St Louis with population PO8893, resource deprivation RDAC90 and population structure PE87
(Messner, Anselin et al. 2000). Reference (R 4.2.2, MASS 7.3.58.2, spdep 1.2.7), on the .dbf
written to CSV in shapefile order:

    library(MASS); library(spdep)
    d <- read.csv("stl.csv")
    m <- glm.nb(HC8893 ~ RDAC90 + PE87 + offset(log(PO8893)), data = d,
                control = glm.control(epsilon = 1e-14, maxit = 200))
    coef(summary(m)); m$theta; logLik(m); AIC(m); fitted(m); exp(confint.default(m))
    nb <- read.gal("stl.gal", region.id = d$POLY_ID_OG); lw <- nb2listw(nb, style = "W")
    r <- residuals(m, type = "pearson")
    moran.test(r, lw, randomisation = FALSE); moran.test(r, lw, randomisation = TRUE)
"""

from __future__ import annotations

import warnings

import geopandas as gpd
import numpy as np
import pytest

from shared_data import need_shared
from usm_geo.units.weights import from_sparse
from usm_geo.models.counts import negative_binomial, residual_moran

pytestmark = pytest.mark.realdata

R_COEF = {"(intercept)": (-10.551358816864827, 0.231835476002010, -45.51227016167848),
          "RDAC90": (0.552420266765236, 0.109687804526893, 5.03629614201818),
          "PE87": (0.155602588025372, 0.051701781508362, 3.00961753126835)}
R_P = {"RDAC90": 4.74626075894773e-07, "PE87": 2.61576852198733e-03}
R_THETA, R_LOGLIK, R_AIC = 3.502370011780620, -217.439039190518514, 442.878078381037028
R_FITTED_1_5 = [7.50694955782907, 21.00078365645731, 1.58979858572203, 4.10098318333682, 1.59760625115100]
R_RR_CI = {"RDAC90": (1.40135008777855, 2.15416766192373), "PE87": (1.05576852171313, 1.29296265602097)}
R_PEARSON_1_3 = [-0.927794347553233, -0.990060826263531, -0.387937979335628]
R_MORAN_I, R_MORAN_EI = 0.13741033872432393, -0.01298701298701299
R_MORAN_Z_NORM, R_MORAN_Z_RAND = 2.13374889175086, 2.25246377232269


@pytest.fixture(scope="module")
def stl():
    shp = need_shared("pysal-builtin-crime-examples", "stl", "stl_hom.shp")
    g = gpd.read_file(shp)
    model = negative_binomial(g["HC8893"], g["PO8893"], g[["RDAC90", "PE87"]], unit_ids=g["FIPS"])
    return g, model, shp.parent / "stl.gal"


def test_coefficients_and_dispersion_equal_glm_nb(stl):
    _, model, _ = stl
    assert model.converged
    c = model.coefficients.set_index("term")
    for term, (coef, se, z) in R_COEF.items():
        assert c.loc[term, "coef"] == pytest.approx(coef, rel=1e-6)
        assert c.loc[term, "se"] == pytest.approx(se, rel=1e-6)
        assert c.loc[term, "z"] == pytest.approx(z, rel=1e-6)
    for term, p in R_P.items():
        assert c.loc[term, "p"] == pytest.approx(p, rel=1e-6)
    for term, (lo, hi) in R_RR_CI.items():
        assert c.loc[term, "rate_ratio"] == pytest.approx(np.exp(R_COEF[term][0]), rel=1e-6)
        assert (c.loc[term, "rr_lower"], c.loc[term, "rr_upper"]) == pytest.approx((lo, hi), rel=1e-6)
    assert model.theta == pytest.approx(R_THETA, rel=1e-6)
    assert model.loglik == pytest.approx(R_LOGLIK, rel=1e-9)
    assert model.aic == pytest.approx(R_AIC, rel=1e-9)
    np.testing.assert_allclose(model.units["expected"].to_numpy()[:5], R_FITTED_1_5, rtol=1e-6)
    np.testing.assert_allclose(model.units["pearson_residual"].to_numpy()[:3], R_PEARSON_1_3, rtol=1e-6)


def test_residual_moran_equals_spdep(stl):
    g, model, gal_path = stl
    import libpysal

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gal = libpysal.io.open(str(gal_path)).read()
    w = from_sparse(gal.sparse, ids=g["FIPS"].to_numpy(), kind="gal")
    m = residual_moran(model, w)
    assert m["I"] == pytest.approx(R_MORAN_I, rel=1e-6)
    assert m["EI"] == pytest.approx(R_MORAN_EI, rel=1e-12)
    assert m["z_norm"] == pytest.approx(R_MORAN_Z_NORM, rel=1e-6)
    assert m["z_rand"] == pytest.approx(R_MORAN_Z_RAND, rel=1e-6)
    # and esda on the same residuals and GAL weights (row-standardised)
    import esda

    gal.transform = "r"
    ref = esda.Moran(model.units["pearson_residual"].to_numpy(), gal, permutations=0)
    assert m["I"] == pytest.approx(ref.I, rel=1e-12)
    assert m["z_norm"] == pytest.approx(ref.z_norm, rel=1e-9)
    assert m["z_rand"] == pytest.approx(ref.z_rand, rel=1e-9)


def test_bad_input_is_refused(stl):
    g, _, _ = stl
    from usm_geo.errors import UsmGeoError

    with pytest.raises(UsmGeoError, match="non-negative integers"):
        negative_binomial(g["HR8893"], g["PO8893"], g[["RDAC90"]])  # rates, not counts
    with pytest.raises(UsmGeoError, match="collinear"):
        negative_binomial(g["HC8893"], g["PO8893"], g[["RDAC90"]].assign(twice=2 * g["RDAC90"]))
    pop = g["PO8893"].to_numpy(float).copy()
    pop[4] = 0
    with pytest.raises(UsmGeoError, match="position 4"):
        negative_binomial(g["HC8893"], pop, g[["RDAC90"]])
