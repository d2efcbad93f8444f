"""Run a test body in several threads at once, bounded in time."""
import threading


def run_threads(target, n: int, timeout: float = 60) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
