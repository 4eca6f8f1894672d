"""Class breaks (mapclassify) and colour-blind-safe palettes for the maps.

Breaks are computed from the values of **all periods** of an indicator together (per level, or
across every level with ``classes="shared"``), so maps of different periods use the same classes
and can be compared.

Palettes are ColorBrewer sequential schemes (Cynthia Brewer, colorbrewer2.org; via branca), both
marked colour-blind safe there: **YlOrRd** when higher values are worse (rates of crime: darker red
= more), **YlGnBu** when higher values are better (e.g. the share who feel safe). Gi* classes use
ColorBrewer **RdBu** (diverging, colour-blind safe); impact areas use Okabe–Ito colours.
"""

from __future__ import annotations

import numpy as np

from usm_geo.errors import UsmGeoError
from usm_geo.maps.escape import check_colour

SCHEMES = ("quantiles", "fisher_jenks", "user")
#: Fisher–Jenks is O(k·n²): above this many values it runs on this many evenly spaced order
#: statistics of the sorted values (deterministic; the top break is still the true maximum).
JENKS_SAMPLE = 2000
NO_VALUE = "#d9d9d9"
#: Gi* bins −3…+3 (ColorBrewer RdBu, blue = cold, red = hot; 0 = not significant).
GISTAR_COLOURS = ["#2166ac", "#67a9cf", "#d1e5f0", "#f7f7f7", "#fddbc7", "#ef8a62", "#b2182b"]
#: Okabe–Ito: treated (vermillion), buffer (orange), control (blue).
IMPACT_COLOURS = {"treated": "#d55e00", "buffer": "#e69f00", "control": "#0072b2"}


def palette(name_or_colours, k: int) -> list[str]:
    """``k`` colours: a ColorBrewer scheme name (3–9 classes) or a list of ``#rrggbb`` colours."""
    if isinstance(name_or_colours, (list, tuple)):
        colours = [check_colour(c) for c in name_or_colours]
        if len(colours) < k:
            raise UsmGeoError(f"the palette has {len(colours)} colours for {k} classes", fix=f"give at least {k} colours")
        return colours[:k]
    from branca.utilities import color_brewer

    if not 1 <= k <= 9:
        raise UsmGeoError(f"k = {k} classes: ColorBrewer palettes have 3 to 9", fix="choose k between 3 and 9")
    try:
        colours = color_brewer(str(name_or_colours), max(k, 3))
    except (ValueError, KeyError):
        raise UsmGeoError(f"unknown palette {name_or_colours!r}", fix="use a ColorBrewer name such as 'YlOrRd', "
                          "'YlGnBu', 'Blues', or a list of '#rrggbb' colours") from None
    if k < 3:  # lightest and darkest of three
        colours = [colours[0], colours[-1]][:k] if k == 2 else [colours[-1]]
    return [check_colour(c) for c in colours]


def quantile_bins(y: np.ndarray, k: int) -> np.ndarray:
    """mapclassify's ``Quantiles(y, k).bins``: percentiles at 100/k steps, interpolated the way
    ``scipy.stats.scoreatpercentile`` does (bit-for-bit), repeated values dropped."""
    w = 100.0 / k
    p = np.arange(w, 100 + w, w)
    if p[-1] > 100.0:
        p[-1] = 100.0
    s = np.sort(np.asarray(y, dtype=np.float64))
    out = []
    for pct in p:
        idx = pct / 100.0 * (len(s) - 1)
        i = int(idx)
        if i == idx:
            out.append(s[i])
        else:
            a, b = i + 1 - idx, idx - i
            out.append((s[i] * a + s[i + 1] * b) / (a + b))
    return np.unique(np.array(out))


def fisher_jenks_bins(y: np.ndarray, k: int) -> np.ndarray:
    """mapclassify's ``FisherJenks(y, k).bins`` (its ``_fisher_jenks_means``, float32 like it),
    with the inner loop vectorised in numpy."""
    x = np.sort(np.asarray(y, dtype=np.float64))
    n = len(x)
    xf = x.astype(np.float32)
    mat1 = np.zeros((n + 1, k + 1), dtype=np.int32)
    mat2 = np.zeros((n + 1, k + 1), dtype=np.float32)
    mat1[1, 1:] = 1
    mat2[2:, 1:] = np.inf
    for l_ in range(2, n + 1):
        vals = xf[:l_][::-1]  # m = 1..l: values[i3 - 1] with i3 = l - m + 1
        s1 = np.cumsum(vals, dtype=np.float32)
        s2 = np.cumsum(vals * vals, dtype=np.float32)
        w = np.arange(1, l_ + 1, dtype=np.float32)
        v = s2 - (s1 * s1) / w
        i4 = l_ - np.arange(1, l_ + 1)  # i3 - 1
        ok = i4 != 0
        for j in range(2, k + 1):
            cand = v[ok] + mat2[i4[ok], j - 1]
            if not len(cand):
                continue
            # the loop keeps the last m whose candidate is <= the running minimum
            best = cand.min()
            if mat2[l_, j] >= best:
                last = np.flatnonzero(cand == best)[-1]
                mat1[l_, j] = (l_ - np.flatnonzero(ok)[last])  # i3 = l - m + 1, m = index + 1
                mat2[l_, j] = best
        mat1[l_, 1] = 1
        mat2[l_, 1] = v[-1]
    kclass = np.zeros(k + 1, dtype=np.float64)
    kclass[k] = x[-1]
    kclass[0] = x[0]
    kk = n
    for c in range(k, 1, -1):
        pivot = mat1[kk, c]
        kclass[c - 1] = x[int(pivot - 2)]
        kk = int(pivot - 1)
    return kclass[1:]


def breaks(values, scheme: str = "quantiles", k: int = 5, user_breaks=None) -> np.ndarray:
    """Upper bounds of the classes (mapclassify's ``bins``) for the finite ``values``.

    ``quantiles`` (equal counts; mapclassify ``Quantiles``), ``fisher_jenks`` (natural breaks;
    mapclassify ``FisherJenks``, on a deterministic sample of :data:`JENKS_SAMPLE` evenly spaced
    order statistics when there are more values), ``user`` (``user_breaks`` as upper bounds; the
    maximum is added as the last bound when values exceed them, as mapclassify ``UserDefined``
    does). Repeated bounds (many ties) are dropped, so there may be fewer than ``k`` classes.
    Empty input gives an empty array.

    mapclassify's definitions are re-implemented here (and checked against mapclassify in the
    tests) because importing mapclassify compiles numba code eagerly, 6–10 s per process.
    """
    if scheme not in SCHEMES:
        raise UsmGeoError(f"unknown classification scheme {scheme!r}", fix="use one of " + ", ".join(SCHEMES))
    y = np.asarray(values, dtype=float)
    y = y[np.isfinite(y)]
    if scheme == "user":
        if user_breaks is None or len(user_breaks) == 0:
            raise UsmGeoError("scheme 'user' needs breaks", fix="pass breaks=[…] (upper bounds of the classes)")
        b = np.asarray(user_breaks, dtype=float)
        if not np.all(np.isfinite(b)) or np.any(np.diff(b) <= 0):
            raise UsmGeoError(f"breaks must be finite and increasing: {list(user_breaks)}", fix="e.g. breaks=[10, 50, 100]")
        if len(y) and y.max() > b[-1]:
            b = np.append(b, y.max())
        return b
    if not 2 <= k <= 9:
        raise UsmGeoError(f"k = {k} classes", fix="choose k between 2 and 9")
    if len(y) == 0:
        return np.array([], dtype=float)
    if scheme == "quantiles":
        b = quantile_bins(y, k)
    else:
        ys = np.sort(y)
        if len(ys) > JENKS_SAMPLE:
            ys = ys[np.linspace(0, len(ys) - 1, JENKS_SAMPLE).round().astype(np.int64)]
        uniq = np.unique(ys)
        b = uniq if len(uniq) <= k else fisher_jenks_bins(ys, k)
        b = np.append(b[:-1], y.max())
    return np.unique(np.asarray(b, dtype=float))


def assign(values, bins: np.ndarray) -> np.ndarray:
    """Class index per value (``bins[i-1] < v <= bins[i]``, mapclassify's rule); −1 for NaN."""
    v = np.asarray(values, dtype=float)
    out = np.full(v.shape, -1, dtype=np.int64)
    ok = np.isfinite(v)
    if len(bins):
        out[ok] = np.minimum(np.searchsorted(bins, v[ok], side="left"), len(bins) - 1)
    return out
