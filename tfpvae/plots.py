"""The earlier name of `tfpvae.figures`, kept so that old imports work."""

from tfpvae.figures import *  # noqa: F401,F403  pylint: disable=wildcard-import
from tfpvae.figures import (HISTORY_FILE, PLOTS_SUBDIR, PlotOptions,  # noqa: F401
                            image_grid, read_history)
