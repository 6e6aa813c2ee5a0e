"""The bench report's plots: heat-map labels readable on every cell colour."""

from __future__ import annotations

import pytest

from rewardkit.bench.report import label_colour


def test_heat_map_labels_contrast_with_their_cell():
    matplotlib = pytest.importorskip("matplotlib")
    cmap = matplotlib.colormaps["RdBu"]
    assert label_colour(cmap(0.0)) == "white"  # dark red (tau -1)
    assert label_colour(cmap(1.0)) == "white"  # dark blue (tau 1, the diagonal)
    assert label_colour(cmap(0.5)) == "black"  # near white (tau 0)
    assert label_colour((1.0, 1.0, 0.0, 1.0)) == "black"  # yellow
    assert label_colour((0.0, 0.0, 0.0, 1.0)) == "white"
