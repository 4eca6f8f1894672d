"""Static figures of the report, drawn with matplotlib (Agg, no display) and returned as markup to
embed: SVG text for small figures, a PNG ``<img>`` with a data URI for maps of many features.

Maps are drawn in a projected CRS in metres (the run's working CRS; a geographic layer is first
projected to its local UTM zone), so the scale bar measures metres on the ground and the north
arrow points up the grid (UTM grid north is within ~1° of true north inside one zone). Figures
never carry data strings (unit names, categories): only numbers and fixed labels; captions and
titles are written, escaped, in the page.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np

#: Above this many features a map is a PNG (an SVG of 50,000 hexagons would weigh megabytes).
SVG_MAX_FEATURES = 2000
#: Levels with more units than this get no printed map (a note instead).
MAX_FEATURES = 60_000
GISTAR_COLOURS = ["#2166ac", "#67a9cf", "#d1e5f0", "#f7f7f7", "#fddbc7", "#ef8a62", "#b2182b"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    # byte-stable SVG: fixed id salt, text kept as text (searchable, smaller), no date
    plt.rcParams.update({"svg.hashsalt": "usm_geo", "svg.fonttype": "none", "font.size": 8,
                         "font.family": "DejaVu Sans"})
    return plt


def _markup(fig, png: bool, alt: str) -> str:
    plt = _plt()
    buf = io.BytesIO()
    if png:
        fig.savefig(buf, format="png", dpi=150, metadata={"Software": None})
        plt.close(fig)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        return f'<img class="usm-fig" alt="{alt}" src="data:image/png;base64,{data}">'
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue().decode("utf-8")
    svg = text[text.index("<svg"):]
    return svg.replace("<svg ", f'<svg class="usm-fig" role="img" aria-label="{alt}" ', 1)


def _metric(frame):
    """``frame`` in a CRS in metres (its own if projected, else its UTM zone)."""
    if frame.crs is None:
        return frame, False
    if frame.crs.is_geographic:
        return frame.to_crs(frame.estimate_utm_crs()), True
    return frame, True


def nice_length(span_m: float) -> float:
    """A round scale-bar length (1, 2 or 5 × 10ᵏ m) of about a fifth of ``span_m``."""
    target = max(span_m / 5.0, 1e-9)
    k = 10 ** math.floor(math.log10(target))
    return max(m * k for m in (1, 2, 5) if m * k <= target)


def _scale_bar_and_north(ax, bounds, metric: bool) -> None:
    x0, y0, x1, y1 = bounds
    w, h = x1 - x0, y1 - y0
    if metric:
        length = nice_length(w)
        bx, by = x0 + 0.04 * w, y0 + 0.04 * h
        ax.plot([bx, bx + length], [by, by], color="black", lw=2.5, solid_capstyle="butt")
        for x in (bx, bx + length):
            ax.plot([x, x], [by - 0.008 * h, by + 0.008 * h], color="black", lw=1)
        label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
        ax.text(bx + length / 2, by + 0.015 * h, label, ha="center", va="bottom", fontsize=7)
    ax.annotate("N", xy=(0.95, 0.95), xytext=(0.95, 0.84), xycoords="axes fraction", ha="center", va="center",
                fontsize=9, fontweight="bold", arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.2})


def choropleth(frame, classes: np.ndarray, colours: list[str], labels: list[str], *, no_value: str,
               legend_title: str, alt: str, extra_legend: list[tuple[str, str]] | None = None) -> str:
    """A filled map of ``frame`` (a GeoDataFrame) with each feature's class index in ``classes``
    (−1 = no value, drawn ``no_value``), a legend of ``labels``, a scale bar and a north arrow."""
    plt = _plt()
    from matplotlib.patches import Patch

    frame, metric = _metric(frame.reset_index(drop=True))
    x0, y0, x1, y1 = frame.total_bounds
    # a printed map is ~1,500 dots wide: detail finer than that only weighs on the file
    frame = frame.set_geometry(frame.geometry.simplify(max(x1 - x0, y1 - y0) / 3000.0, preserve_topology=True))
    cls = np.asarray(classes, dtype=np.int64)
    fill = np.array([colours[c] if 0 <= c < len(colours) else no_value for c in cls], dtype=object)
    many = len(frame) > SVG_MAX_FEATURES
    fig, ax = plt.subplots(figsize=(6.3, 4.6))
    frame.plot(ax=ax, color=list(fill), edgecolor="#555555" if not many else "none",
               linewidth=0.3 if not many else 0)
    bounds = frame.total_bounds
    pad_x, pad_y = 0.02 * (bounds[2] - bounds[0]), 0.02 * (bounds[3] - bounds[1])
    ax.set_xlim(bounds[0] - pad_x, bounds[2] + pad_x)
    ax.set_ylim(bounds[1] - pad_y, bounds[3] + pad_y)
    ax.set_aspect("equal")
    ax.set_axis_off()
    _scale_bar_and_north(ax, bounds, metric)
    handles = [Patch(facecolor=c, edgecolor="#555555", label=lab) for c, lab in zip(colours, labels)]
    if (cls < 0).any():
        handles.append(Patch(facecolor=no_value, edgecolor="#555555", label="no value"))
    for colour, lab in extra_legend or []:
        handles.append(Patch(facecolor=colour, edgecolor="#555555", label=lab))
    ax.legend(handles=handles, title=legend_title, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7,
              title_fontsize=7, frameon=False)
    fig.subplots_adjust(left=0.01, right=0.68, top=0.99, bottom=0.01)
    return _markup(fig, png=many, alt=alt)


def month_series(labels: list[str], counts: list, alt: str) -> str:
    """A line chart of counts per month (``None`` = suppressed: a gap in the line)."""
    plt = _plt()
    y = np.array([np.nan if c is None else float(c) for c in counts])
    fig, ax = plt.subplots(figsize=(6.6, 2.2))
    x = np.arange(len(labels))
    ax.plot(x, y, color="#b2182b", lw=1.2, marker="o", ms=1.8)
    step = max(1, len(labels) // 10)
    ticks = [i for i in range(len(labels)) if labels[i].endswith("-01")] or list(range(0, len(labels), step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([labels[i] for i in ticks])
    ax.set_ylim(bottom=0)
    ax.set_ylabel("incidents per month")
    ax.grid(axis="y", color="#dddddd", lw=0.5)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return _markup(fig, png=False, alt=alt)


def month_of_year(counts: list, alt: str) -> str:
    """Bars of counts by month of the year (January … December; ``None`` = suppressed, no bar)."""
    plt = _plt()
    y = np.array([0.0 if c is None else float(c) for c in counts])
    fig, ax = plt.subplots(figsize=(6.6, 2.0))
    ax.bar(np.arange(12), y, color="#ef8a62")
    ax.set_xticks(np.arange(12))
    ax.set_xticklabels(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
    ax.set_ylabel("incidents")
    ax.grid(axis="y", color="#dddddd", lw=0.5)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return _markup(fig, png=False, alt=alt)
