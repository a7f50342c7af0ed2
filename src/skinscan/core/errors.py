"""The one error hierarchy of skinscan. Each edge (API, CLI, GUI) translates these once.

SkinscanError
├── InvalidImageError        the bytes are not an image we can read (not an image, corrupt, truncated, empty)
│   ├── UnsupportedFormatError   a recognisable file of a kind we do not read (SVG, PDF, zip, ...)
│   ├── ImageTooSmallError       under the minimum side length
│   └── ImageTooLargeError       too many pixels or bytes, or more decoding work than allowed (a decompression bomb)
├── BusyError                every decoding slot is taken for longer than a caller waits; try again shortly
├── DataError                a dataset folder or file that cannot be read as labelled records
├── ConfigError              a setting that cannot be used (unknown name, invalid choice, unavailable device)
├── ModelNotFoundError       an unknown model name or a missing model file
├── ModelFormatError         a model file or spec that is unreadable or inconsistent
├── DownloadError            a model that cannot be fetched or verified: unreachable, too large, a wrong checksum
└── MissingExtraError        an optional dependency is not installed; the message says which extra
"""

from __future__ import annotations


class SkinscanError(Exception):
    """Base of every error skinscan raises on purpose."""


class InvalidImageError(SkinscanError):
    """The input is not an image skinscan can read."""


class UnsupportedFormatError(InvalidImageError):
    """A recognisable file, but of a kind skinscan does not accept."""


class ImageTooSmallError(InvalidImageError):
    """The image is smaller than the minimum side length."""


class ImageTooLargeError(InvalidImageError):
    """The image has too many pixels or bytes."""


class BusyError(SkinscanError):
    """Decoding capacity is taken by other images for longer than the caller waits; a retry later may work."""

    def __init__(self, message: str, retry_after_s: int = 2) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DataError(SkinscanError):
    """A dataset that cannot be read as labelled records."""


class ConfigError(SkinscanError, ValueError):
    """A setting that cannot be used; the message names the valid choices. Also a ValueError, as a bad
    argument is."""


class ModelNotFoundError(SkinscanError):
    """An unknown model name or a missing model file."""


class ModelFormatError(SkinscanError):
    """A model file or spec that cannot be used."""


class DownloadError(SkinscanError):
    """A model source that cannot be fetched or trusted: unreachable, too slow, too large, or files whose sha256 is
    not the one published (or given)."""


class MissingExtraError(SkinscanError):
    """An optional dependency is missing."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"{module} is not installed; install it with: pip install 'skinscan[{extra}]'")
        self.module = module
        self.extra = extra
