"""``logviewer``: filter and follow the engine log.

Options as in the guide, case-insensitive: -path, -type 1|2, -include LIST,
-exclude LIST (IDs and ranges such as ``200,400-500``), -nodate, -notime,
-nopid, -notid, -noseq, -notype, -noid, -help; plus -nofollow, which prints
what is there and exits (for scripts).  Without it, new lines are followed
across rolls until Ctrl-C.  A line that does not parse is printed as it is."""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, TextIO

from dtcore.control.enginelog import (
    COLUMNS,
    Line,
    files_in_order,
    first_sequence,
    last_sequence,
    log_name,
    parse,
    series_after,
    series_of,
)


def id_set(text: str) -> Callable[[int], bool]:
    """A membership test for a list such as ``200,400-500``."""
    spans = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            spans.append((int(lo), int(hi) if sep else int(lo)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not an ID or an ID range") from None
    return lambda i: any(lo <= i <= hi for lo, hi in spans)


@dataclass
class Filter:
    type: int = 2
    include: Callable[[int], bool] | None = None
    exclude: Callable[[int], bool] | None = None
    hide: frozenset[str] = frozenset()

    def render(self, line: Line) -> str | None:
        if line.fields is None:
            return line.raw  # shown, never dropped
        if line.type > self.type:
            return None
        if self.include is not None and not self.include(line.id):
            return None
        if self.exclude is not None and self.exclude(line.id):
            return None
        return "\t".join(v for c, v in zip(COLUMNS, line.fields) if c not in self.hide)


def _read_new(path: Path, offset: int) -> tuple[list[str], int]:
    """Whole lines after ``offset``; a partial last line waits for its end."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    return data[:end].decode(errors="replace").splitlines(), offset + end


def lines(target: Path, follow: bool, poll: float = 0.2,
          stop: Callable[[], bool] = lambda: False) -> Iterator[Line]:
    """Every line of the log at ``target`` (a file or a LogDir), then, when
    following, each new line as it is written, across rolls."""
    if target.is_file():
        files, directory = [target], None
    else:
        files, directory = files_in_order(target), target
    if not files and not follow:
        return
    current: Path | None = None
    offset = 0
    for path in files:
        current, offset = path, 0
        got, offset = _read_new(path, 0)
        yield from map(parse, got)
    if not follow:
        return
    last_seq = last_sequence(current) if current else 0
    while not stop():
        got = []
        if current is not None:
            got, offset = _read_new(current, offset)
        if got:
            for raw in got:
                line = parse(raw)
                last_seq = max(last_seq, line.seq)
                yield line
            continue
        # nothing new here: has the log moved on to the next file?
        if directory is not None:
            nxt = directory / log_name(series_after(series_of(current.name))) \
                if current is not None else None
            if nxt is None:
                ordered = files_in_order(directory)
                nxt = ordered[0] if ordered else None
            if nxt is not None and nxt.exists() and first_sequence(nxt) > last_seq:
                current, offset = nxt, 0
                continue
        time.sleep(poll)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="logviewer", add_help=False,
                                description="Filter and follow the dtcore engine log (dtlog<N>.dtl).")
    p.add_argument("-path", default=None,
                   help="a log file or the folder holding them (default: LogDir)")
    p.add_argument("-type", type=int, choices=(1, 2), default=2,
                   help="1: warnings and errors; 2: also information (default)")
    p.add_argument("-include", type=id_set, help="only these IDs, e.g. 200,400-500")
    p.add_argument("-exclude", type=id_set, help="all but these IDs")
    for col in ("date", "time", "pid", "tid", "seq", "type", "id"):
        p.add_argument(f"-no{col}", action="store_true", help=f"leave out the {col} column")
    p.add_argument("-nofollow", action="store_true", help="print what is there and exit")
    p.add_argument("-help", action="help", help="show the options")
    return p


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args_in = [a.lower() if a.startswith("-") else a for a in (sys.argv[1:] if argv is None else argv)]
    args = build_parser().parse_args(args_in)
    if args.path is None:
        from dtcore.control.config import Config, default_path, log_dir
        args.path = log_dir(Config(default_path()))
    target = Path(args.path)
    if not target.exists():
        print(f"logviewer: {target} does not exist", file=sys.stderr)
        return 2
    flt = Filter(args.type, args.include, args.exclude,
                 frozenset(c for c in COLUMNS if getattr(args, f"no{c}", False)))
    try:
        for line in lines(target, follow=not args.nofollow):
            text = flt.render(line)
            if text is not None:
                out.write(text + "\n")
                out.flush()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
