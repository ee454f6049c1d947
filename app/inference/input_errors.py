"""What an input image can be refused for: the client's bytes, never the server's fault (4xx)."""

from __future__ import annotations


class ImageDecodeError(ValueError):
    """The bytes are not a readable image (empty, truncated, corrupt, or an unsupported format)."""


class UnsupportedImageError(ImageDecodeError):
    """The bytes are not in any image format we accept (text, PDF, ZIP, EPS...)."""


class ImageTooLargeError(ValueError):
    """The image declares more pixels than the configured limit."""


class PreprocessError(ValueError):
    """A readable image that the model's preprocessing cannot use (e.g. nothing drawn on it)."""
