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
        if self.default is None and value is None:  # "unlimited"
            return value
        if self.default is not None and (isinstance(self.default, bool) or not isinstance(self.default, int)):
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
    Setting("QMemoryBufferMax", 256, 32, 4095, "MB", restart=True),
    Setting("OpBufferSize", 0, 0, None, "ops"),
    Setting("MemoryQueueToDiskThreshold", 100, 0, 100, "%"),
    Setting("QJournalDir", "/var/lib/dtcore/queue"),
    Setting("QJournalFileSize", 5, 1, 4095, "MB"),
    Setting("QJournalFreeSpaceMin", 250, 0, None, "MB"),
    Setting("QJournalSpaceMax", None, 0, None, "MB"),  # None: unlimited; 0: no disk queuing
    Setting("QLogWriteThrough", 0, 0, 1),
    Setting("QueueSizeAlertThreshold", 50, 0, 100, "%", restart=True),
)}


def default(name: str) -> Any:
    return SETTINGS[name].default


def check(name: str, value: Any) -> Any:
    """Validate ``value`` for the setting ``name``."""
    return SETTINGS[name].validate(value)
