"""One root exception for the whole library.

Each subclass also inherits the built-in exception it resembles, so callers that
catch ``ValueError`` or ``FileNotFoundError`` keep working. The messages say what
to do; they carry no UI state.
"""

from __future__ import annotations


class HeritageError(Exception):
    """Root of every error raised on purpose by heritage."""


class InputNotFoundError(HeritageError, FileNotFoundError):
    """An input file or folder given by the user does not exist."""


class OutputNotWritableError(HeritageError, PermissionError):
    """The output location cannot be written."""


class ExifError(HeritageError, ValueError):
    """EXIF metadata could not be read or makes no sense."""


class ModelError(HeritageError, RuntimeError):
    """A model folder is missing, incomplete, or its weights fail verification."""


class DataError(HeritageError, ValueError):
    """Input data (images, vector layers, networks, data sets) is unusable as given."""


class CancelledError(HeritageError):
    """The user asked a long-running job to stop."""
