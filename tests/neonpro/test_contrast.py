"""The stylesheet's colour pairs meet WCAG 2.x AA contrast (4.5:1 for text), computed from the
colours site.css itself declares — so a change of palette that fails AA fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = (Path(__file__).resolve().parents[2] / "neonpro" / "static" / "neonpro" / "site.css").read_text()
VARIABLES = dict(re.findall(r"--([a-z0-9-]+):\s*(#[0-9a-fA-F]{6})", CSS))


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _colour(name: str) -> str:
    return "#ffffff" if name == "white" else VARIABLES[name]


# (text, background): body text, muted notes, links, the top bar, errors, the emergency banner, statuses
PAIRS = [
    ("ink", "white"),
    ("ink", "bg"),
    ("muted", "white"),
    ("muted", "bg"),
    ("brand-2", "white"),
    ("white", "brand"),
    ("danger", "white"),
    ("danger", "danger-bg"),
    ("white", "danger"),
    ("warn", "warn-bg"),
]


def test_the_palette_is_declared() -> None:
    assert {"ink", "muted", "brand", "brand-2", "bg", "danger", "danger-bg", "warn", "warn-bg"} <= set(VARIABLES)


@pytest.mark.parametrize(("text", "background"), PAIRS)
def test_text_colours_meet_wcag_aa(text: str, background: str) -> None:
    assert contrast(_colour(text), _colour(background)) >= 4.5


def test_the_formula_matches_known_ratios() -> None:
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#767676", "#ffffff"), 2) == 4.54  # the lightest grey that passes AA on white
