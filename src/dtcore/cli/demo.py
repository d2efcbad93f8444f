"""README's main job: generate a replication set, start a target on
127.0.0.1, run a full mirror, change the source the way users do, run a
difference mirror that also removes orphans, then replicate live (a
program writing through the API: log appends, page writes into a
database-like file, creates, renames of a file and a folder, deletes, with
the link cut once), then replicate what plain file calls change (the file
watcher), then verify, plant a difference on the target, find it and
remirror it, printing progress and statistics throughout.

    python -m dtcore.cli.demo [--dir DIR] [--files N] [--seed S]
"""
from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from dtcore.cli.progress import Bar, print_connection_stats, print_result
from dtcore.engine import Engine
from dtcore.model.repset import ReplicationSet
from dtcore.source.connection import Connection
from dtcore.source.mirror import DIFFERENCE, FULL

BLOCK = 65536


def generate(root: Path, files: int, rng: random.Random) -> None:
    words = [b"mirror", b"replication", b"target", b"source", b"queue", b"ok", b"4019"]
    for i in range(files):
        d = root / f"dir{i % 7}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.choice([0, 1500, 20_000, 200_000, 3_000_000, 9_000_000 if i % 40 == 0 else 64])
        if i % 2:
            data = rng.randbytes(size)
        else:
            data = b"".join(b" ".join(rng.choices(words, k=8)) + b"\n"
                            for _ in range(size // 40 + 1))[:size]
        (d / f"file{i:04d}.{'log' if i % 2 == 0 else 'bin'}").write_bytes(data)


def change(root: Path, rng: random.Random) -> dict[str, int]:
    """Edit the source the way users do: overwrite blocks, insert bytes near the
    start of a file, append, add and delete files."""
    counts = dict(overwritten=0, inserted=0, appended=0, added=0, deleted=0, renamed=0)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        roll = rng.random()
        data = bytearray(p.read_bytes())
        if roll < 0.10 and len(data) > BLOCK:
            at = rng.randrange(len(data) - 100)
            data[at:at + 100] = rng.randbytes(100)
            counts["overwritten"] += 1
        elif roll < 0.15 and len(data) > 1000:
            data[500:500] = rng.randbytes(100)
            counts["inserted"] += 1
        elif roll < 0.20:
            data += rng.randbytes(3000)
            counts["appended"] += 1
        elif roll < 0.22:
            p.unlink()
            counts["deleted"] += 1
            continue
        else:
            continue
        p.write_bytes(data)
    for i in range(3):
        (root / f"new{i}.dat").write_bytes(rng.randbytes(50_000))
        counts["added"] += 1
    for p in sorted(root.rglob("*.log"))[:2]:
        p.rename(p.with_suffix(".renamed"))
        counts["renamed"] += 1
    return counts


def replicate(engine: Engine, conn: Connection, repset: ReplicationSet, source: Path,
              work: Path, rng: random.Random, seconds: float = 3.0) -> None:
    """Write through the replication API for a while, cutting the link once,
    and show the queue and the recovery point as it goes."""
    rep = engine.replicate(conn, repset, directory=str(work / "queue"))
    (source / "app").mkdir()
    rep.mkdir("app")
    page = 4096
    with rep.open("app/pages.db", "wb") as f:
        f.write(bytes(page * 256))
    log = rep.open("app/events.log", "a")
    db = rep.open("app/pages.db", "r+b")
    start = last = time.monotonic()
    cut = False
    n = ops_before = 0
    print("Replicating live for a few seconds (writes through Replication.open):")
    while time.monotonic() - start < seconds:
        log.write(f"{time.time():.6f} event {n} ok\n")
        db.seek(rng.randrange(256) * page)
        db.write(rng.randbytes(page))
        if n % 50 == 0:
            with rep.open(f"app/report{n // 50}.txt", "w") as out:
                out.write(f"report {n}\n" * 20)
        if n % 500 == 250:
            os.rename(source / "app" / f"report{n // 50}.txt", source / "app" / f"kept{n // 50}.txt")
            rep.rename(f"app/report{n // 50}.txt", f"app/kept{n // 50}.txt")
            old = source / "app" / f"report{n // 50 - 1}.txt"
            old.unlink()
            rep.delete(f"app/report{n // 50 - 1}.txt")
        n += 1
        now = time.monotonic()
        if not cut and now - start > seconds / 2:
            db.flush()
            log.flush()
            conn.link.fail(OSError("cut by the demo"))
            cut = True
            print("  link cut: ops queue, the supervisor reconnects, unacknowledged batches go again")
        if now - last >= 0.5:
            s = rep.statistics()
            print(f"  {s['status']:<11} {(n - ops_before) / (now - last):7.0f} writes/s  "
                  f"queued {s['conOpsInRepQueue']:5d} ops  unacknowledged {s['conOpsInAckQueue']:5d}  "
                  f"RPO {s['ConRPL'] * 1000:.0f} ms")
            ops_before, last = n, now
            time.sleep(0.01)  # the program pauses now and then, as programs do
    log.close()
    db.close()
    os.rename(source / "app", source / "service")
    rep.rename("app", "service")  # a folder rename is one op
    rep.drain(60)
    s = rep.statistics()
    merge = s["merge"]
    print(f"Replication: {merge['ops_in']} ops reported, {merge['ops_out']} after merging "
          f"({merge['bytes_saved']} bytes saved), {conn.counters['conResentOpCount']} ops resent "
          f"after the cut, {engine.stats.server['autoReConnects']} reconnect(s); "
          f"RPO now {s['ConRPL'] * 1000:.0f} ms, status {s['status']}")
    check = engine.verify(conn, repset, log_dir=str(work / "logs"))
    print(f"Verify after replication: {len(check.differences)} differences")
    rep.close()


def watch(engine: Engine, conn: Connection, repset: ReplicationSet, source: Path,
          work: Path, rng: random.Random) -> None:
    """Change the source with plain file calls, as any program does; the
    watcher turns what the kernel reports into ops."""
    rep = engine.replicate(conn, repset, directory=str(work / "queue-watch"), watch=True)
    print(f"Replicating plain file changes (watched with {rep.watcher.method}):")
    start = time.monotonic()
    (source / "inbox").mkdir()
    for i in range(200):
        (source / "inbox" / f"mail{i}.eml").write_bytes(rng.randbytes(rng.randrange(500, 5000)))
    with open(source / "service" / "events.log", "a") as log:
        for i in range(1000):
            log.write(f"{time.time():.6f} watched event {i}\n")
            log.flush()
    with open(source / "service" / "pages.db", "r+b") as db:
        for _ in range(50):
            db.seek(rng.randrange(256) * 4096)
            db.write(rng.randbytes(4096))
    os.rename(source / "inbox", source / "archive")  # one op, whatever the folder holds
    for i in range(0, 200, 2):
        os.unlink(source / "archive" / f"mail{i}.eml")
    os.symlink("archive", source / "latest")
    rep.drain(60)
    s = rep.statistics()
    w = s["watcher"]
    print(f"  {w['events']} events became {s['merge']['ops_out']} ops; files compared "
          f"{w['files rehashed']} times, {w['bytes sent']:,} bytes of changed data sent; all "
          f"applied {time.monotonic() - start:.2f} s after the first change, status {s['status']}")
    rep.close()


def run(work: Path, files: int, rng: random.Random) -> int:
    source, target_root = work / "source", work / "target"
    print(f"Generating {files} files under {source} ...")
    generate(source, files, rng)
    with Engine(secret=secrets.token_hex(16), LogDir=str(work / "logs")) as engine:
        target = engine.start_target(target_root, host="127.0.0.1", port=0)
        print(f"Target serving {target_root} on 127.0.0.1:{target.port}")
        repset = engine.replication_set(source, name="demo")
        conn = engine.connect(repset, "127.0.0.1", target.port, "demo")
        totals = engine.repset_totals["demo"]
        print(f"Replication set: {totals.files} files, {totals.directories} folders, "
              f"{totals.bytes / 2**20:.1f} MiB (CalculateOnConnect)")

        with Bar() as bar:
            result = engine.mirror(conn, repset, FULL, progress=bar)
        print_result("full mirror", result)

        counts = change(source, rng)
        print("Changed the source: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        with Bar() as bar:
            result = engine.mirror(conn, repset, DIFFERENCE, orphans=True, progress=bar)
        print_result("difference mirror (block checksums, rolling delta, orphans)", result)

        replicate(engine, conn, repset, source, work, rng)
        watch(engine, conn, repset, source, work, rng)

        check = engine.verify(conn, repset, log_dir=str(work / "logs"))
        print(f"Verify: {len(check.differences)} differences")
        planted = next(p for p in sorted((target_root / "demo").rglob("*.bin"))
                       if p.stat().st_size > 1000)
        with open(planted, "r+b") as f:  # damage the target copy behind the engine's back
            f.seek(10)
            f.write(b"planted")
        check = engine.verify(conn, repset, remirror=True, log_dir=str(work / "logs"))
        for path, reason in check.differences:
            print(f"Verify found {path}: {reason}")
        again = engine.verify(conn, repset, log_dir=str(work / "logs"))
        print(f"Verify after the remirror: {len(again.differences)} differences; "
              f"log in {work / 'logs' / 'DTVerify.log'}")
        print_connection_stats(engine.statistics())
        return 0 if not again.differences else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", help="work here instead of a temporary folder (kept afterwards)")
    ap.add_argument("--files", type=int, default=400)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="dtcore-demo-"))
    try:
        return run(work, args.files, rng)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
