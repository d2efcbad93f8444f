"""Every server and job setting of the guide's Linux list (chapter 12), plus
three of its Windows list that dtcore also honours: its
name, default, allowed values, unit and whether a change needs a restart.

Values are integers unless the setting holds a path, a file name or text.
Each setting's ``use`` says what reads it: ``engine`` (the running engine
acts on it), ``not yet`` (accepted and validated, but no code reads it so
far: a change has no effect) or ``ignored`` (the guide calls it unused or
internal: accepted, never read).  A test recomputes the first two from the
source, so this table cannot claim a setting is live when it is not."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dtcore.errors import InvalidParameterError, InvalidParameterTypeError

INT, PATH, FILE, TEXT = "integer", "path", "file name", "text"
UNLIMITED = "Unlimited"  # the guide's word for QJournalSpaceMax's default


@dataclass(frozen=True)
class Setting:
    """One setting.  ``choices`` lists the allowed integers when the guide
    gives a list; otherwise ``minimum``/``maximum`` bound it (None: open),
    with ``extra`` values allowed beside the range.  ``restart`` is True when
    the engine must restart to use a new value."""

    name: str
    default: Any
    minimum: int | None = None
    maximum: int | None = None
    unit: str = ""
    restart: bool = False
    kind: str = INT
    choices: tuple[int, ...] = ()
    extra: tuple[int, ...] = ()
    ignored: bool = False

    @property
    def use(self) -> str:
        """``engine``, ``not yet`` or ``ignored`` (see the module's docstring)."""
        if self.ignored:
            return IGNORED
        return NOT_YET if self.name in UNUSED_YET else ENGINE

    def allowed(self) -> str:
        """What the setting accepts, in words, for error messages and `config show`."""
        if self.ignored:
            return "anything (not used by the engine)"
        if self.kind != INT:
            return f"a {self.kind}"
        if self.choices:
            text = " or ".join(str(c) for c in self.choices)
        elif self.minimum is None and self.maximum is None:
            text = "any integer"
        elif self.maximum is None:
            text = f"an integer >= {self.minimum}"
        else:
            text = " or ".join([*map(str, self.extra), f"{self.minimum}..{self.maximum}"])
        if self.default is None:
            text += f" or {UNLIMITED}"
        return text + (f" {self.unit}" if self.unit else "")

    def parse(self, text: str) -> Any:
        """The value a configuration file or environment variable spells as ``text``."""
        text = text.strip()
        if self.ignored or self.kind != INT:
            return text
        if self.default is None and text.lower() == UNLIMITED.lower():
            return None
        try:
            return int(text, 0)
        except ValueError:
            raise InvalidParameterTypeError(
                f"{self.name}={text!r} is not allowed: expected {self.allowed()}") from None

    def validate(self, value: Any) -> Any:
        """Return ``value`` if allowed, else raise the invalid-parameter error
        (-101) naming the setting, the value and what is allowed."""
        if self.ignored:
            return value
        if self.kind != INT:
            if not isinstance(value, str):
                raise InvalidParameterTypeError(
                    f"{self.name}={value!r} is not allowed: expected {self.allowed()}")
            return value
        if value is None and self.default is None:  # unlimited
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameterTypeError(
                f"{self.name}={value!r} is not allowed: expected {self.allowed()}")
        if self.choices:
            ok = value in self.choices
        else:
            ok = value in self.extra or (
                (self.minimum is None or value >= self.minimum)
                and (self.maximum is None or value <= self.maximum))
        if not ok:
            raise InvalidParameterError(f"{self.name}={value} is not allowed: expected {self.allowed()}")
        return value


_DATA = "/var/lib/dtcore"
_OFF_ON = (0, 1)
_PORT = dict(minimum=1025, maximum=65535)


_s = Setting


def _ignored(name: str) -> Setting:
    return Setting(name, "", kind=TEXT, ignored=True)


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    _s("ActivationCode", "", kind=TEXT),
    _s("AdapterFlags", 4, choices=(2, 4)),
    _ignored("Advertisement"),
    _s("AllFailover", 1, choices=_OFF_ON),
    _s("AllMustFail", 1, choices=_OFF_ON),
    _s("AutoReconnect", 1, choices=_OFF_ON, restart=True),
    _s("AutoRemirror", 1, choices=(0, 1, 2, 3, 4)),
    _s("AutoRemirrorRetry", 30, 0, None, "seconds"),
    _s("AutoRetransmit", 1, choices=_OFF_ON),
    _s("BackupDir", _DATA, kind=PATH),
    _s("CalculateOnConnect", 1, choices=_OFF_ON, restart=True),
    _ignored("CaseSensitiveRepSetQueries"),
    _s("ChecksumAll", 1, choices=_OFF_ON),
    _s("Cleaner", 0, choices=_OFF_ON),
    _ignored("ClientLog"),
    _ignored("ClientLogName"),
    _s("ConnectionFile", "connect.sts", kind=FILE),
    _s("DataPath", _DATA, kind=PATH),
    _s("DefaultProtocol", 1, choices=(1,), restart=True),
    _s("DirUNetPort", 1505, unit="port", restart=True, **_PORT),  # a restart on the source
    _s("DisableAttributeReplication", 0, choices=_OFF_ON, restart=True),
    _ignored("EnablePerformanceTracking"),
    _s("EnableSparseFileMirroring", 1, choices=_OFF_ON),
    _s("EnableTaskCmdProcessing", 0, choices=_OFF_ON),
    _ignored("EnableVolumeLevelReplication"),
    _ignored("EncryptionCipherFilter"),
    _s("EncryptNetworkData", 0, choices=_OFF_ON),
    _s("ExtendedAttributes", 0, choices=_OFF_ON),
    _ignored("ExtensionNumber"),
    _s("FileQueueSize", 16, 1, 65535, "entries"),
    _s("HBExternalRate", 3, 0, 65535, "seconds"),
    _ignored("HBInteralRate"),
    _ignored("HBLoopback"),
    _s("HBTrace", 0, choices=_OFF_ON),
    _s("HBTTL", 10, 0, 65535, "seconds"),
    _s("HPQueueRatio", 5, 1, 65535, "replication packets per mirror packet", restart=True),
    _s("IgnoreDeleteOps", 0, choices=_OFF_ON),
    _s("LoadSourceTarget", 3, choices=(0, 1, 2, 3), restart=True),
    _s("LogAllOrphans", 0, choices=_OFF_ON),
    _s("LogDir", "/var/log/DT", kind=PATH, restart=True),
    _s("LogFile", "DTLog", kind=FILE),
    _s("LogMessageLevel", 2, choices=(0, 1, 2, 3)),
    _s("MaxChecksumBlocks", 32, 1, None, "blocks"),
    _s("MaxConnections", 5, 0, 65535, "connections", restart=True),
    _s("MaxLogFileSize", 5242880, 1, None, "bytes"),
    _s("MaxNumberofLogFiles", 20, 1, 999, "files"),
    _s("MaxRemoveOrphansOpSize", 1000, 0, 131072, "files"),
    _s("MaxRetry", 5, 0, None, "attempts", restart=True),
    _s("MaxWriteChunkSize", 65536, 1, 131072, "bytes"),
    _s("MemoryQueueToDiskThreshold", 100, 0, 100, "%"),
    _s("MinCompressionFileSize", 1024, 0, None, "bytes"),
    _s("MirrorChunkSize", 65536, 1, 1048576, "bytes"),
    _s("MirrorOverwrite", 1, choices=(0, 1, 2)),
    _ignored("MirrorPrompting"),
    _s("MirrorQueueLimit", 1000, 1, 65535, "ops"),
    _s("MirrorZeroKFiles", 1, choices=_OFF_ON),
    _s("MissedPackets", 5, 1, 65535, "requests"),
    _s("MoveOrphanedFiles", 0, choices=_OFF_ON),
    _s("MoveOrphansDir", _DATA, kind=PATH),
    _s("NetPort", 1500, unit="port", restart=True, **_PORT),
    _s("NetworkRetry", 10, 1, None, "seconds"),
    _ignored("NetworkStatusInterval"),
    _s("NetworkTimeout", 120, 0, None, "seconds"),
    _ignored("NodeLockedLicenseKey"),
    _s("OpBufferSize", 0, 0, None, "ops"),
    _s("PingFrequency", 5, 1, 65535, "seconds"),
    _s("PreFailbackWait", 0, choices=_OFF_ON),
    _s("PreFailoverWait", 0, choices=_OFF_ON),
    _s("QJournalDir", f"{_DATA}/queue", kind=PATH),
    _s("QJournalFileSize", 5, 1, 4095, "MB"),
    _s("QJournalFreeSpaceMin", 250, 0, None, "MB"),
    _ignored("QJournalPreload"),
    _s("QJournalSpaceMax", None, 0, None, "MB"),  # None: unlimited; 0: no disk queuing
    _s("QLogWriteThrough", 0, choices=_OFF_ON),
    _s("QMemoryBufferMax", 256, 32, 4095, "MB", restart=True),
    _s("QueueSizeAlertThreshold", 50, 0, 100, "%", restart=True),
    _s("RemapLink", 1, choices=_OFF_ON),
    _s("RemoveAllOrphans", 1, choices=_OFF_ON),
    _s("RemoveOrphansTime", 60, 1, 131072, "minutes"),
    _s("ReplaceTarget", 0, choices=_OFF_ON),
    _s("RepSetDBName", "DblTake.db", kind=FILE),
    _s("RestoreOverwrite", 2, choices=(0, 1, 2)),
    _ignored("RestorePrompting"),
    _s("RestoreSpecialExecutableHandling", 1, choices=_OFF_ON),
    _s("SaveStatFile", 1, choices=_OFF_ON),
    _s("ScheduleFile", "Schedule.sts", kind=FILE),
    _s("ScheduleInterval", 1, 1, 3600, "seconds", restart=True),
    _s("ShareUpdateInterval", 60, 1, 65535, "minutes"),
    _s("SkipCompressionFileExt",
       "mp3.exe.wmv.wma.qt.mpg.mpeg.zip.jpg.jpeg.tiff.rar.cab.tgz.bz.bz2.z.pkg.sea.sit.sitx", kind=TEXT),
    _s("SmallFileThreshold", 65536, 0, None, "bytes"),
    _s("SourcePendingAcks", 2000, 100, 20000, "ops"),
    _s("StatsFileName", "statistic.sts", kind=FILE),
    _s("StatsLoggingOn", 0, choices=_OFF_ON),
    _s("StatsMaxFileSize", 10485760, 1, None, "bytes"),
    _ignored("StatsMaxObjects"),
    _s("StatsPort", 1506, unit="port", **_PORT),
    _ignored("StatsShmSize"),
    _s("StatsWriteInterval", 5, 0, 65535, "minutes"),
    _ignored("SystemMemoryLimit"),
    _ignored("TargetPaused"),
    _ignored("TargetPausedVirtual"),
    _s("TCPBufferSize", 375000, 4096, 7500000, "bytes", restart=True, extra=(0,)),  # 0: kernel tunes it
    _s("TGCloseDelay", 1000, 0, 2000, "ms"),
    _s("TGExecutionRetryLimit", 0, 0, 65536, "retries"),
    _s("TGMirrorCapacityHigh", 20, 2, 75, "% of memory"),
    _s("TGMirrorCapacityLow", 15, 1, 75, "% of memory"),
    _s("TGRetryLocked", 3, 0, 65536, "seconds"),
    _ignored("TGThreadCount"),
    _s("TGUseExtendedQueue", 1, choices=_OFF_ON),
    _s("TGWriteCache", 1, choices=_OFF_ON),
    _s("TGWriteFailureBeforeNotification", 10, 0, 1024, "failures", restart=True),
    _s("UNetPort", 1500, unit="port", restart=True, **_PORT),
    _s("UpdateInterval", 1, 1, 9999, "seconds"),
    _s("UserIntervention", 1, choices=_OFF_ON),
    _s("UseShareFile", 1, choices=_OFF_ON),
    _s("VerifyLogAppend", 1, choices=_OFF_ON),
    _s("VerifyLogLimit", 1048576, 0, 4 << 30, "bytes"),
    _s("VerifyLogName", "DTVerify.log", kind=FILE),
    _s("VerifyRetryInterval", 3, 0, None, "minutes"),
    _s("VerifyRetryLimit", 5, 0, None, "retries"),
    _ignored("WarningPings"),
    # The guide lists these for Windows servers only; dtcore honours them on Linux.
    _s("EnableCRCCheck", 0, choices=_OFF_ON),
    _s("TGMoveFilesOnDelete", 0, choices=_OFF_ON),
    _s("TGMoveFilesPath", "", kind=PATH),
)}

ENGINE, NOT_YET, IGNORED = "engine", "not yet", "ignored"

#: settings no code reads yet: failover, scheduling, licensing, the engine's
#: own database files and a few retry knobs the engine has other rules for
UNUSED_YET = frozenset({
    "ActivationCode", "AdapterFlags", "AllFailover", "AllMustFail", "AutoRemirrorRetry",
    "AutoRetransmit", "BackupDir", "Cleaner", "ConnectionFile", "DataPath", "DefaultProtocol",
    "DirUNetPort", "DisableAttributeReplication", "EnableTaskCmdProcessing", "HBTrace",
    "IgnoreDeleteOps", "LoadSourceTarget", "LogAllOrphans", "LogFile", "MaxRetry",
    "MirrorQueueLimit", "MissedPackets", "NetworkRetry", "PingFrequency", "PreFailbackWait",
    "PreFailoverWait", "RepSetDBName", "ReplaceTarget", "RestoreSpecialExecutableHandling",
    "ScheduleFile", "ScheduleInterval", "ShareUpdateInterval", "TGCloseDelay",
    "TGUseExtendedQueue", "TGWriteFailureBeforeNotification", "UNetPort", "UpdateInterval",
    "UseShareFile", "UserIntervention", "VerifyRetryInterval", "VerifyRetryLimit",
})

#: settings of the guide's Windows list that dtcore honours on Linux too
WINDOWS_HONOURED = ("EnableCRCCheck", "TGMoveFilesOnDelete", "TGMoveFilesPath")

# case-insensitive lookup: DT.conf files in the field vary in capitalisation
_BY_LOWER = {name.lower(): name for name in SETTINGS}


def canonical(name: str) -> str | None:
    """The table's spelling of ``name``, or None when it is not a setting."""
    return _BY_LOWER.get(name.lower())


def default(name: str) -> Any:
    return SETTINGS[name].default


def check(name: str, value: Any) -> Any:
    """Validate ``value`` for the setting ``name``."""
    return SETTINGS[name].validate(value)
