"""Builds two manifests of N entries (fixed-length paths, 1 % of sizes
changed on one side), parses and compares them, and prints JSON: the
listing bytes, the peak RSS before and after the comparison, and what the
comparison found.  Run in its own process so the peak is this work's
(reset through /proc/self/clear_refs once the listings are built)."""
import json
import sys

import numpy as np

from dtcore.model.manifest import _REC, SAME_SIZE, THERE, Listing


def manifest(n: int, changed: np.ndarray) -> bytes:
    width = len(f"d{n // 1000:05}/f{n:08}")
    rec = np.zeros(n, dtype=[("head", "u1", _REC.size), ("path", f"S{width}")])
    fields = np.zeros(n, dtype=np.dtype({
        "names": ["plen", "kind", "mode", "size", "mtime"],
        "formats": ["<u2", "u1", "<u4", "<i8", "<i8"],
        "offsets": [0, 2, 4, 8, 16], "itemsize": _REC.size}))
    fields["plen"], fields["kind"], fields["mode"] = width, 1, 0o100644
    fields["size"] = 1000 + changed
    fields["mtime"] = 10 ** 18
    rec["head"] = fields.view(np.uint8).reshape(n, _REC.size)
    i = np.arange(n)
    rec["path"] = np.char.add(np.char.add("d", np.char.zfill((i // 1000).astype(str), 5)),
                              np.char.add("/f", np.char.zfill(i.astype(str), 8))).astype(f"S{width}")
    return rec.tobytes()


def peak() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


n = int(sys.argv[1])
changed = np.zeros(n, dtype=np.int64)
changed[::100] = 1
ours, theirs = manifest(n, changed), manifest(n, np.zeros(n, dtype=np.int64))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak from here on: the building's temporaries are gone
before = peak()
a, b = Listing.parse(ours), Listing.parse(theirs)
flags, match = a.compare(b)
after = peak()
print(json.dumps({"bytes": len(ours) + len(theirs), "before": before, "after": after,
                  "there": int(((flags & THERE) != 0).sum()),
                  "size_differs": int(((flags & SAME_SIZE) == 0).sum())}))
