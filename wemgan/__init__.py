"""wemgan: WEM-GAN facial expression editing by Action Units, with Haar-wavelet detail skips."""

from .aus import AU_DESCRIPTIONS, AU_NAMES, EXPRESSIONS, OPENFACE_COLUMNS, au_vector, expression
from .faces import FaceNotFoundError, FacesExtraMissingError
from .images import ImageTooLargeError, InvalidImageError
from .model import MAX_FRAMES, MAX_STRENGTH, WEMGAN, PreparedPhoto

__version__ = "0.1.0"

__all__ = [
    "AU_DESCRIPTIONS",
    "AU_NAMES",
    "EXPRESSIONS",
    "MAX_FRAMES",
    "MAX_STRENGTH",
    "OPENFACE_COLUMNS",
    "WEMGAN",
    "FaceNotFoundError",
    "FacesExtraMissingError",
    "ImageTooLargeError",
    "InvalidImageError",
    "PreparedPhoto",
    "au_vector",
    "expression",
]
