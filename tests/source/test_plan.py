"""The mirror's decisions as pure functions: no socket, no file."""
import numpy as np
import pytest

from dtcore.model.manifest import (
    FILE,
    HASHED,
    LINK,
    NEWER,
    SAME_HASH,
    SAME_KIND,
    SAME_MODE,
    SAME_MTIME,
    SAME_SIZE,
    THERE,
    Entry,
)
from dtcore.source.mirror import BLOCK, DIFFERENCE, FULL, ROLLING, SKIPPED, WHOLE, MirrorOptions
from dtcore.source.mirror.orphans import select_orphans
from dtcore.source.mirror.plan import SAME, VERIFY, Rates, plan_file, transfer, unchanged

MB = 1 << 20
S = 10**9


def entry(size=4 * MB, mtime=100 * S, mode=0o100644, kind=FILE, hash=-1, path=b"f"):
    return Entry(path, kind, size, mtime, mode, 0, 0, 1, 1, 1, mtime, hash)


def opts(**kw):
    kw.setdefault("checksum", False)
    return MirrorOptions(**kw)


# hashing much faster than the link: comparing checksums pays for large files
FAST_HASH = Rates(hash_rate=3e9, net_rate=1e8)
SLOW_HASH = Rates(hash_rate=1e8, net_rate=3e9)


@pytest.mark.parametrize("target, cut_short, rates, expected", [
    (None, False, FAST_HASH, WHOLE),                       # nothing there yet
    (entry(size=0), False, FAST_HASH, WHOLE),              # an empty copy
    (entry(kind=LINK), False, FAST_HASH, WHOLE),           # something else there
    (entry(), True, SLOW_HASH, BLOCK),                     # cut short: compare what arrived
    (entry(), False, SLOW_HASH, WHOLE),                    # hashing costs more than sending
    (entry(), False, FAST_HASH, BLOCK),                    # same size: fixed blocks
    (entry(size=4 * MB - 100), False, FAST_HASH, ROLLING),  # data shifted
    (entry(size=3 * MB), False, FAST_HASH, BLOCK),         # grown by whole blocks
    (entry(size=9 * MB + 100), False, FAST_HASH, BLOCK),   # more than halved: blocks
])
def test_transfer(target, cut_short, rates, expected):
    assert transfer(entry(), target, opts(), rates, cut_short) == expected


def test_small_files_travel_whole():
    small = entry(size=1000)
    assert transfer(small, entry(size=900), opts(small_file=65536), FAST_HASH) == WHOLE


def test_overwrite_rules_skip_before_anything_else():
    src, older, newer = entry(mtime=100 * S), entry(mtime=50 * S), entry(mtime=200 * S)
    assert plan_file(src, older, opts(overwrite=0), FAST_HASH) == SKIPPED
    assert plan_file(src, newer, opts(overwrite=2), FAST_HASH) == SKIPPED
    assert plan_file(src, older, opts(overwrite=2, mode=FULL), FAST_HASH) == BLOCK
    # a file cut short is repaired whatever MirrorOverwrite says
    assert plan_file(src, newer, opts(overwrite=0), FAST_HASH, cut_short=True) == BLOCK


def test_zero_byte_files_follow_mirror_zero_k_files():
    empty = entry(size=0)
    assert plan_file(empty, None, opts(zero_k_files=False), FAST_HASH) == SKIPPED
    assert plan_file(empty, None, opts(), FAST_HASH) == WHOLE


def test_same_content_by_checksum_or_by_attributes():
    a = entry(size=1000, hash=7)
    assert plan_file(a, entry(size=1000, hash=7), opts(checksum=True), FAST_HASH) == SAME
    assert plan_file(a, entry(size=1000, hash=8), opts(checksum=True), FAST_HASH) == WHOLE
    # no hashes in the listing: checksums cannot say, so the file is compared
    assert plan_file(entry(), entry(), opts(checksum=True), FAST_HASH) == BLOCK
    assert plan_file(entry(), entry(), opts(mode=DIFFERENCE), FAST_HASH) == SAME
    assert plan_file(entry(), entry(), opts(mode=FULL), FAST_HASH) == BLOCK
    assert plan_file(entry(), entry(mtime=1), opts(mode=DIFFERENCE), FAST_HASH) == BLOCK
    assert plan_file(entry(), entry(), opts(), FAST_HASH, cut_short=True) == BLOCK


def test_verify_compares_and_never_skips_by_overwrite():
    v = opts(verify=True, overwrite=0)
    assert plan_file(entry(), entry(), v, FAST_HASH) == SAME
    assert plan_file(entry(), entry(mtime=1), v, FAST_HASH) == VERIFY
    assert plan_file(entry(), None, v, FAST_HASH) == VERIFY
    assert plan_file(entry(), None, opts(verify=True, remirror=True), FAST_HASH) == WHOLE


def test_unchanged_in_bulk():
    same = THERE | SAME_KIND | SAME_SIZE | SAME_MTIME | SAME_MODE
    flags = np.array([same, same | HASHED | SAME_HASH, THERE | SAME_KIND, same | NEWER, 0, same],
                     dtype=np.uint32)
    there = np.array([1, 1, 1, 1, 0, 1], bool)
    is_file = np.array([1, 1, 1, 1, 1, 0], bool)
    is_link = ~is_file
    sizes = np.array([10, 10, 10, 10, 10, 0])
    keep = lambda o: unchanged(o, flags, there, is_file, is_link, sizes).tolist()  # noqa: E731
    assert keep(opts(mode=DIFFERENCE)) == [True, True, False, True, False, True]
    assert keep(opts(mode=FULL)) == [False] * 6
    assert keep(opts(checksum=True, small_file=64)) == [False, True, False, False, False, True]
    assert keep(opts(mode=FULL, overwrite=0)) == [True, True, True, True, False, False]
    assert keep(opts(mode=FULL, overwrite=2)) == [False, False, False, True, False, False]
    # a verify never leaves a file alone because of MirrorOverwrite
    assert keep(opts(mode=FULL, overwrite=0, verify=True)) == [False] * 6


def test_rates_follow_measurements_of_real_size_only():
    r = Rates(hash_rate=1e9, net_rate=1e8)
    r.sent(1000, 1.0)  # too small to say anything
    assert r.net == 1e8
    r.sent(10 * MB, 0.01)
    assert r.net == 10 * MB / 0.01  # the first measurement replaces the start value
    r.sent(10 * MB, 0.1)
    assert r.net == 0.7 * (10 * MB / 0.01) + 0.3 * (10 * MB / 0.1)  # later ones are smoothed in


def test_orphans_by_age():
    now = 10_000 * S
    old, fresh = entry(mtime=now - 2 * 3600 * S, path=b"old"), entry(mtime=now - 60 * S, path=b"new")
    assert select_orphans([old, fresh], opts(), now) == [b"old", b"new"]
    assert select_orphans([old, fresh], opts(remove_all_orphans=False, orphan_minutes=60), now) == \
        [b"old"]
