"""Charts drawn on the server as SVG, the way a RevOps person reads a chart: a y axis with round numbers and
gridlines, the number on every bar, a legend, a label under each bar (or every few bars), a tooltip per bar —
and a text alternative for screen readers. No JavaScript and no chart library: the admin stays one page of
HTML, and what the chart says is in the page a test reads."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

FONT = "font-family:system-ui,-apple-system,Segoe UI,sans-serif"
INK, GRID, MUTED = "#24292f", "#d0d7de", "#57606a"


@dataclass
class Series:
    name: str
    colour: str
    values: list[float | int | Decimal]


def nice_scale(peak: float, ticks: int = 4) -> tuple[float, float]:
    """The axis's top and step: round numbers (1, 2, 2.5, 5 × 10ⁿ) with at most `ticks` steps above zero."""
    if peak <= 0:
        return 1.0, 1.0  # an empty chart still has an axis (0 and 1)
    rough = peak / ticks
    magnitude = 10 ** math.floor(math.log10(rough))
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * magnitude
        if step >= rough:
            break
    if peak < ticks and float(peak).is_integer():  # counts: never a 0.5 tick
        step = 1.0
    return step * math.ceil(peak / step), step


def number(value: float | int | Decimal, compact: bool = False) -> str:
    """1,234 — or, on an axis (`compact`), 1.2k, 3.4M."""
    value = float(value)
    if compact:
        for size, suffix in ((1e6, "M"), (1e3, "k")):
            if abs(value) >= size:
                text = f"{value / size:.1f}".rstrip("0").rstrip(".")
                return f"{text}{suffix}"
    if value.is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def _legend(series: list[Series], x: float, y: float) -> list[str]:
    parts = []
    for s in series:
        parts.append(f'<rect x="{x:.1f}" y="{y - 9}" width="10" height="10" fill="{s.colour}"/>')
        parts.append(f'<text x="{x + 14:.1f}" y="{y}" fill="{INK}">{escape(s.name)}</text>')
        x += 24 + 7.2 * len(s.name)
    return parts


def bars(
    labels: list[str],
    series: list[Series],
    *,
    title: str,
    width: int = 960,
    height: int = 220,
    label_every: int = 1,
    tooltips: list[str] | None = None,
    unit: str = "",
) -> SafeString:
    """Vertical bars, the series stacked; each bar's total written above it. `labels` name the bars (shown
    every `label_every`-th); `unit` follows the numbers in tooltips and the text alternative."""
    left, right, top, bottom = 52, 30, 30, 26  # (right: room for the last label, centred under its bar)
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(float(s.values[i]) for s in series) for i in range(len(labels))]
    peak, step = nice_scale(max(totals, default=0))
    parts = [
        f'<svg class="zk-svg" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" style="{FONT};font-size:12px;max-height:{height * 1.4:.0f}px">',
        f"<title>{escape(title)}</title>",
    ]
    parts += _legend(series, left, 14) if len(series) > 1 else []
    tick = 0.0
    while tick <= peak + 1e-9:
        y = top + plot_h - plot_h * tick / peak
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}">{number(tick, True)}</text>'
        )
        tick += step
    band = plot_w / max(len(labels), 1)
    bar_w = max(min(band * 0.72, 64), 2)
    for i, label in enumerate(labels):
        x = left + band * i + (band - bar_w) / 2
        base: float = top + plot_h
        tip = (
            tooltips[i]
            if tooltips
            else f"{label}: " + ", ".join(f"{number(s.values[i])}{unit} {s.name}" for s in series)
        )
        parts.append(f'<g class="zk-bar" data-label="{escape(label)}" data-total="{number(totals[i])}">')
        parts.append(f"<title>{escape(tip)}</title>")
        for s in series:
            value = float(s.values[i])
            if value <= 0:
                continue
            h = plot_h * value / peak
            base -= h
            parts.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{s.colour}"/>')
        if totals[i] > 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{base - 3:.1f}" text-anchor="middle" fill="{INK}" '
                f'font-size="{11 if band >= 24 else 9}">{number(totals[i], band < 40)}</text>'
            )
        parts.append("</g>")
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 8}" text-anchor="middle" fill="{MUTED}">'
                f"{escape(label)}</text>"
            )
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{INK}"/>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (every text above is escaped)


def hbars(labels: list[str], values: list[int], *, title: str, colour: str, width: int = 480) -> SafeString:
    """Horizontal bars, one per label, the number at the end of each: for a few named things (plans)."""
    row, left, right = 26, min(max((len(label) for label in labels), default=10) * 7 + 12, 240), 48
    height = row * len(labels) + 8
    peak = max(values, default=0) or 1
    parts = [
        f'<svg class="zk-svg" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'style="{FONT};font-size:12px;max-height:{height * 1.4:.0f}px">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 4 + row * i
        w = (width - left - right) * value / peak
        shown = label if len(label) * 7 <= left else label[: max(left // 7 - 1, 4)] + "…"
        parts.append(f'<g class="zk-bar" data-label="{escape(label)}" data-total="{number(value)}">')
        parts.append(f"<title>{escape(label)}: {number(value)}</title>")
        parts.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" fill="{INK}">{escape(shown)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 4}" width="{max(w, 1):.1f}" height="{row - 8}" fill="{colour}"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 16}" fill="{INK}">{number(value)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (every text above is escaped)
