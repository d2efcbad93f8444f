"""A writer process for the watcher tests: ``python writer.py ROOT SEED OPS``
makes OPS random changes beneath ROOT the way programs do (appends, page
overwrites, truncates, creates, renames of files and folders, deletes,
mode and time changes, symlinks, hard links), some in quick bursts."""
import os
import random
import shutil
import sys
import time


def main(root: str, seed: int, count: int) -> None:
    rng = random.Random(seed)
    n = 0

    def files() -> list[str]:
        out = []
        for d, _, fs in os.walk(root):
            out += [os.path.join(d, f) for f in fs if not os.path.islink(os.path.join(d, f))]
        return sorted(out)

    def dirs() -> list[str]:
        return sorted(d for d, _, _ in os.walk(root))

    def fresh(where: str) -> str:
        nonlocal n
        n += 1
        return os.path.join(where, f"n{n}")

    for i in range(count):
        fs, ds = files(), dirs()
        what = rng.choice(["append", "append", "overwrite", "overwrite", "truncate", "create",
                           "create", "mkdir", "rename", "rename-dir", "delete", "rmtree", "chmod",
                           "utime", "symlink", "hardlink", "burst"])
        try:
            if what == "append" and fs:
                with open(rng.choice(fs), "ab") as f:
                    for _ in range(rng.randrange(1, 20)):
                        f.write(b"log line %d\n" % rng.randrange(10**6))
                        f.flush()
            elif what == "overwrite" and fs:
                p = rng.choice(fs)
                size = os.path.getsize(p)
                with open(p, "r+b") as f:
                    f.seek(rng.randrange(size + 1))
                    f.write(rng.randbytes(rng.randrange(1, 9000)))
            elif what == "truncate" and fs:
                p = rng.choice(fs)
                os.truncate(p, rng.randrange(os.path.getsize(p) + 1))
            elif what == "create":
                with open(fresh(rng.choice(ds)), "wb") as f:
                    f.write(rng.randbytes(rng.randrange(0, 30000)))
            elif what == "mkdir":
                os.mkdir(fresh(rng.choice(ds)))
            elif what == "rename" and fs:
                os.rename(rng.choice(fs), fresh(rng.choice(ds)))
            elif what == "rename-dir" and len(ds) > 1:
                d = rng.choice(ds[1:])
                to = rng.choice([x for x in ds if not (x + "/").startswith(d + "/")] or [root])
                os.rename(d, fresh(to))
            elif what == "delete" and fs:
                os.unlink(rng.choice(fs))
            elif what == "rmtree" and len(ds) > 3:
                shutil.rmtree(rng.choice(ds[1:]))
            elif what == "chmod" and fs:
                os.chmod(rng.choice(fs), rng.choice([0o600, 0o640, 0o755, 0o444]))
            elif what == "utime" and fs:
                t = rng.randrange(10**18, 2 * 10**18)
                os.utime(rng.choice(fs), ns=(t, t))
            elif what == "symlink" and fs:
                os.symlink(os.path.relpath(rng.choice(fs), root), fresh(root))
            elif what == "hardlink" and fs:
                os.link(rng.choice(fs), fresh(rng.choice(ds)))
            elif what == "burst":  # made, written and moved before anyone looks
                d = fresh(rng.choice(ds))
                os.mkdir(d)
                for k in range(5):
                    with open(os.path.join(d, f"b{k}"), "wb") as f:
                        f.write(rng.randbytes(rng.randrange(1, 5000)))
                os.rename(d, fresh(root))
        except FileNotFoundError:
            pass
        if rng.random() < 0.05:
            time.sleep(rng.random() * 0.05)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
