"""Server and job settings from the guide's Linux list (chapter 12): name,
default, allowed range, unit and whether a change needs a restart.

This table starts with the settings the native kernels read; the control
plane extends it to the whole list."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dtcore.errors import InvalidParameterError, InvalidParameterTypeError


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    minimum: int | None = None
    maximum: int | None = None
    unit: str = ""
    restart: bool = False

    def validate(self, value: Any) -> Any:
        """Return ``value`` if allowed, else raise the invalid-parameter error (-101)."""
        if isinstance(self.default, bool) or not isinstance(self.default, int):
            if not isinstance(value, type(self.default)):
                raise InvalidParameterTypeError(
                    f"{self.name}={value!r}: expected {type(self.default).__name__}")
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameterTypeError(f"{self.name}={value!r}: expected an integer")
        if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum):
            raise InvalidParameterError(
                f"{self.name}={value}: allowed range is {self.minimum}..{self.maximum}"
                + (f" {self.unit}" if self.unit else ""))
        return value


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("MirrorChunkSize", 65536, 1, 1048576, "bytes"),
    Setting("MaxWriteChunkSize", 65536, 1, 131072, "bytes"),
    Setting("MaxChecksumBlocks", 32, 1, None, "blocks"),
    Setting("MinCompressionFileSize", 1024, 0, None, "bytes"),
    Setting("SkipCompressionFileExt",
            "mp3.exe.wmv.wma.qt.mpg.mpeg.zip.jpg.jpeg.tiff.rar.cab.tgz.bz.bz2.z.pkg.sea.sit.sitx"),
)}


def default(name: str) -> Any:
    return SETTINGS[name].default


def check(name: str, value: Any) -> Any:
    """Validate ``value`` for the setting ``name``."""
    return SETTINGS[name].validate(value)
