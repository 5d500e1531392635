"""tilerunner: run machine-learning models over imagery of any size."""

from tilerunner.errors import TilerunnerError

__all__ = ["TilerunnerError", "__version__"]

__version__ = "0.1.0"
