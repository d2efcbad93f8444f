"""Child process for the crash test: pushes numbered records through a
write-through disk queue and reports each acknowledged number on stdout,
until it is killed."""
import sys

from dtcore.queues import DiskQueue


def record(i: int) -> bytes:
    """Small records, and now and then one large enough (18-45 KB) to be
    written from the caller's buffer rather than copied."""
    return (b"%08d|" % i) * ((1 + i % 37) if i % 29 else (2000 + i % 3000))


def main() -> None:
    directory, start = sys.argv[1], int(sys.argv[2])
    q = DiskQueue(directory, segment_bytes=64 * 1024, write_through=True, free_min_mb=0)
    out = sys.stdout.buffer
    i = start
    while True:
        batch = [record(i + k) for k in range(1 + i % 3)]
        q.push(batch)
        i += len(batch)
        out.write(b"%d\n" % i)  # everything below i is acknowledged
        out.flush()


if __name__ == "__main__":
    main()
