"""Child process for the crash test: pushes numbered records through a
write-through disk queue and reports each acknowledged number on stdout,
until it is killed.  With several producers, each thread numbers its own
records and reports "thread number"."""
import sys
import threading

from dtcore.queues.journal import DiskQueue


def record(i: int, thread: int = -1) -> bytes:
    """Small records, and now and then one large enough (18-45 KB) to be
    written from the caller's buffer rather than copied."""
    tag = b"%08d|" % i if thread < 0 else b"%02d:%08d|" % (thread, i)
    return tag * ((1 + i % 37) if i % 29 else (2000 + i % 3000))


def main() -> None:
    directory, start = sys.argv[1], int(sys.argv[2])
    producers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    q = DiskQueue(directory, segment_bytes=64 * 1024, write_through=True, free_min_mb=0)
    out = sys.stdout.buffer
    lock = threading.Lock()

    def produce(thread: int) -> None:
        i = start
        while True:
            batch = [record(i + k, thread) for k in range(1 + i % 3)]
            q.push(batch)
            i += len(batch)
            with lock:  # everything below i is acknowledged
                out.write(b"%d\n" % i if thread < 0 else b"%d %d\n" % (thread, i))
                out.flush()

    if producers == 1:
        produce(-1)
    else:
        for t in range(producers):
            threading.Thread(target=produce, args=(t,), daemon=True).start()
        threading.Event().wait()  # until killed


if __name__ == "__main__":
    main()
