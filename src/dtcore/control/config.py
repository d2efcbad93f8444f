"""The settings in effect: the table's defaults, overridden by ``DT.conf``,
then by ``DTCORE_<NAME>`` environment variables, then by keyword arguments.

``DT.conf`` holds ``Name=Value`` lines; ``#`` starts a comment line and blank
lines are skipped.  An unknown name is reported (event 4096) and ignored; a
line that is not ``Name=Value`` is reported the same way; a known name with
a value it does not allow raises the invalid-parameter error (-101)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from dtcore._files import replace_whole
from dtcore.control import settings
from dtcore.control.events import emit
from dtcore.errors import InvalidParameterError

ENV_PREFIX = "DTCORE_"
# DTCORE_ variables of ours that are not settings
_RESERVED = {"DTCORE_CONF", "DTCORE_BENCH_DIR", "DTCORE_SECRET"}
DEFAULT_PATH = "/etc/DT/DT.conf"


def default_path() -> Path:
    """Where DT.conf lives: $DTCORE_CONF, else /etc/DT/DT.conf."""
    return Path(os.environ.get("DTCORE_CONF", DEFAULT_PATH))


def _parse_line(line: str) -> tuple[str, str] | None:
    """(name, value) of a ``Name=Value`` line; None for blanks and comments.
    Raises ValueError for anything else."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError("expected Name=Value")
    return name.strip(), value.strip()


class Config(Mapping[str, Any]):
    """Read-only mapping of every setting to the value in effect, with
    :meth:`set` for changes at run time.  ``origin(name)`` tells where a
    value came from: default, file, environment, argument or runtime."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 env: Mapping[str, str] | None = None, **overrides: Any) -> None:
        self.path = Path(path) if path is not None else None
        self._values: dict[str, Any] = {n: s.default for n, s in settings.SETTINGS.items()}
        self._origin: dict[str, str] = dict.fromkeys(self._values, "default")
        self.pending_restart: set[str] = set()
        if self.path is not None and self.path.exists():
            self._load_file(self.path)
        self._load_env(os.environ if env is None else env)
        for name, value in overrides.items():
            self._apply(name, value, "argument", where="keyword argument")

    # -- loading --

    def _load_file(self, path: Path) -> None:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            where = f"{path}:{number}"
            try:
                entry = _parse_line(line)
            except ValueError:
                emit(4096, name=repr(line.strip()[:60]), where=f"{where}, not Name=Value")
                continue
            if entry is not None:
                self._apply(entry[0], entry[1], "file", where=where)

    def _load_env(self, env: Mapping[str, str]) -> None:
        for key, text in env.items():
            if key.upper().startswith(ENV_PREFIX) and key.upper() not in _RESERVED:
                self._apply(key[len(ENV_PREFIX):], text, "environment", where=f"environment {key}")

    def _apply(self, name: str, value: Any, origin: str, where: str) -> str | None:
        canonical = settings.canonical(name)
        if canonical is None:
            emit(4096, name=name, where=where)
            return None
        setting = settings.SETTINGS[canonical]
        try:
            if isinstance(value, str):
                value = setting.parse(value)
            setting.validate(value)
        except InvalidParameterError as e:
            raise type(e)(f"{where}: {e.args[0]}") from None
        self._values[canonical] = value
        self._origin[canonical] = origin
        return canonical

    # -- the mapping --

    @staticmethod
    def _key(name: str) -> str:
        canonical = settings.canonical(name)
        if canonical is None:
            raise KeyError(name)
        return canonical

    def __getitem__(self, name: str) -> Any:
        return self._values[self._key(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def origin(self, name: str) -> str:
        return self._origin[self._key(name)]

    # -- changes --

    def set(self, name: str, value: Any, *, running: bool = True) -> bool:
        """Change a setting (a string is parsed as DT.conf would).  Returns
        True when the running engine only uses the new value after a
        restart; that is also logged and remembered in ``pending_restart``."""
        canonical = self._apply(name, value, "runtime", where=f"set {name}")
        if canonical is None:
            raise InvalidParameterError(f"{name} is not a setting")
        setting = settings.SETTINGS[canonical]
        restart = running and setting.restart and setting.use == settings.ENGINE
        if restart:
            self.pending_restart.add(canonical)
            emit(6001, detail=f"{canonical} changed to {self._values[canonical]}; the engine "
                              f"uses the new value after a restart")
        return restart

    def reload(self) -> list[str]:
        """Read DT.conf again (SIGHUP to a service): every setting that came
        from the file, or from nothing, takes the file's value now, as
        :meth:`set` would give it (environment and arguments still win).
        Returns the names whose value changed."""
        if self.path is None:
            return []
        fresh = Config(self.path, env={})
        changed = []
        for name, value in fresh._values.items():
            if self._origin[name] in ("file", "default") and self._values[name] != value:
                self.set(name, value)
                self._origin[name] = fresh._origin[name]
                changed.append(name)
        return changed

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the values set from the file or at run time back to DT.conf,
        keeping its comments, order and unknown lines; new names go last.
        The file is replaced atomically."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise InvalidParameterError("no DT.conf path to save to")
        lines = target.read_text(errors="replace").splitlines() if target.exists() else []
        wanted = {n for n, o in self._origin.items() if o in ("file", "runtime")}
        written: set[str] = set()
        out = []
        for line in lines:
            try:
                entry = _parse_line(line)
            except ValueError:
                entry = None
            canonical = settings.canonical(entry[0]) if entry else None
            if canonical in wanted:
                if canonical in written:
                    continue  # a repeated name: the last one used to win; keep one
                out.append(f"{canonical}={self.text(canonical)}")
                written.add(canonical)
            else:
                out.append(line)
        out += [f"{n}={self.text(n)}" for n in sorted(wanted - written)]
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_whole(target, ("\n".join(out) + "\n").encode())
        return target

    def text(self, name: str) -> str:
        """A value as DT.conf spells it."""
        value = self[name]
        return settings.UNLIMITED if value is None else str(value)


def log_dir(config: Config) -> str:
    """Where logs go: LogDir; but when LogDir is only the default and this
    user cannot write there (anyone but root, usually), a folder of the
    user's own, ``$XDG_STATE_HOME/dtcore/log`` (~/.local/state/dtcore/log)."""
    path = str(config["LogDir"])
    if config.origin("LogDir") != "default" or _writable(path):
        return path
    home = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local/state")
    return os.path.join(home, "dtcore", "log")


def _writable(path: str) -> bool:
    """Whether ``path`` is, or could be made as, a folder this user writes in."""
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)
