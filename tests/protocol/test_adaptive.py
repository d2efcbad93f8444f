"""When the channel compresses: the decision from measured rates, and the
channel as it runs over a fast link and over a throttled one."""
from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from dtcore.model.compression import Compressor
from dtcore.protocol.adaptive import ALWAYS, AUTO, Adaptive
from dtcore.protocol.frames import Channel

MB = 1 << 20


def _known(ratio, compress_rate, link_rate, mode=AUTO):
    a = Adaptive(mode)
    a.compressed(MB, int(ratio * MB), MB / compress_rate)
    a.sent(MB, MB / link_rate)
    return a


def test_it_compresses_until_it_has_measured_both_sides():
    a = Adaptive()
    assert all(a.want() for _ in range(50))
    a.sent(MB, 0.0001)  # a fast link, but lz4 not measured yet
    assert a.want()


@pytest.mark.parametrize("ratio, compress, link, pays", [
    (0.3, 500e6, 12.5e6, True),    # text over 100 Mbit/s
    (0.3, 500e6, 125e6, True),     # text over 1 Gbit/s
    (0.3, 500e6, 3e9, False),      # text over loopback: lz4 is the slower part
    (0.95, 500e6, 12.5e6, True),   # shrinks by a twentieth, but the link is slow
    (0.99, 500e6, 12.5e6, False),  # a hundredth saved costs more than it gains
    (1.0, 500e6, 12.5e6, False),   # does not shrink at all
    (0.5, 100e6, 60e6, False),     # saves 50 MB/s of a 60 MB/s link: not enough
])
def test_it_compresses_where_shrinking_beats_the_link(ratio, compress, link, pays):
    assert _known(ratio, compress, link).pays() is pays
    assert _known(ratio, compress, link, ALWAYS).want()  # always is always


def test_while_it_does_not_compress_it_probes_every_sixteenth_payload():
    a = _known(1.0, 500e6, 3e9)
    wants = [a.want() for _ in range(64)]
    assert wants.count(True) == 4 and wants[15] and wants[31]
    assert a.skipped == 60
    for _ in range(20):  # the probes find data that shrinks, on a link that slowed
        a.compressed(MB, MB // 4, MB / 500e6)
        a.sent(MB, MB / 12.5e6)
    assert a.pays() and a.want()


def test_small_samples_do_not_move_the_estimates():
    a = Adaptive()
    a.compressed(1000, 10, 1e-9)
    a.sent(1000, 1.0)
    assert a.ratio is a.compress_rate is a.link_rate is None
    with pytest.raises(ValueError):
        Adaptive("sometimes")


class _Throttle:
    """A reader on the far end that takes ``rate`` bytes a second."""

    def __init__(self, sock, rate):
        self.sock, self.rate, self.got = sock, rate, 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        start = time.monotonic()
        while True:
            ahead = self.got / self.rate - (time.monotonic() - start) if self.rate else 0
            if ahead > 0:
                time.sleep(ahead)
            data = self.sock.recv(64 << 10)
            if not data:
                return
            self.got += len(data)


def _channel(rate):
    a, b = socket.socketpair()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 << 10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
    return Channel(a, compressor=Compressor()), _Throttle(b, rate), a


@pytest.mark.timeout(60)
def test_over_a_slow_link_text_goes_compressed_and_over_a_fast_one_random_goes_raw():
    text = b"the target data state changed: now Mirroring\n" * 30_000  # about 1.4 MB
    ch, far, sock = _channel(20e6)  # 20 MB/s: lz4 shrinks text far faster than that
    for _ in range(12):
        flags, parts = ch.encode(text)
        ch.send_parts(parts)
    assert flags and ch.policy.pays() and ch.policy.skipped == 0
    sock.close()
    noise = os.urandom(MB)
    ch, far, sock = _channel(0)  # as fast as the reader can take it
    for _ in range(40):
        ch.send_parts(ch.encode(noise)[1])
    assert not ch.policy.pays() and ch.policy.skipped > 20  # lz4 tried on the probes only
    sock.close()


def test_a_backlog_behind_a_slow_send_means_the_link_is_behind():
    a = _known(0.3, 500e6, 3e9)  # the buffers made the link look fast
    assert not a.pays() and not a.want(backlog=16 << 20)  # the last send was fast too
    a.sent(MB, MB / 12.5e6)  # then a send waited for the link
    assert not a.pays()  # the average has not caught up
    assert a.want(backlog=16 << 20)  # but 16 MiB wait to go behind it: shrink them
    assert not a.behind(backlog=1 << 20)
    for _ in range(10):  # until the data stops shrinking
        a.compressed(MB, MB, MB / 500e6)
    wants = [a.want(backlog=16 << 20) for _ in range(8)]
    # looked at every other payload while behind
    assert wants.count(True) == 4 and all(x != y for x, y in zip(wants, wants[1:]))
