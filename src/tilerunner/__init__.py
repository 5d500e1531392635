"""tilerunner: run machine-learning models over imagery of any size."""

from tilerunner.errors import TilerunnerError
from tilerunner.lazy import defer_within

# rasterio imports boto3 (0.12 s) whenever it is installed, only to open s3:// URLs with it
defer_within("rasterio.session", "boto3")

__all__ = ["TilerunnerError", "__version__"]

__version__ = "0.1.0"
