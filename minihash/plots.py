"""Figures for the notebooks and reports.

Every helper takes `ax` (or `figsize`) and returns `(fig, ax)`, as libfmp does,
so a notebook can place it in its own grid or show it alone. Sections follow
the notebooks' order.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def _fig_ax(ax=None, figsize=(8, 3)):
    """The figure and axes to draw on: `ax`'s own, or a new pair."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax
