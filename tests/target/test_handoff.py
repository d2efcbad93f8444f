"""The reader lends at most a few buffers to the applier; a body it does not
claim, or one too large, goes through the queue."""
from dtcore.queues.records import MB, MIRROR, REPLICATION
from dtcore.target.handoff import MAX_BODY, MAX_BUFFERS, Handoff


def test_buffers_circulate_and_are_reused():
    h = Handoff()
    view = h.buffer(1000)
    assert view is not None and len(view) == 1000 and not view.readonly
    view[:3] = b"abc"
    assert h.claim(view, MIRROR) is view
    assert h.bytes == {REPLICATION: 0, MIRROR: 1000}
    buf = view.obj
    h.give_back(view, MIRROR)
    assert h.bytes[MIRROR] == 0
    again = h.buffer(600)  # a free buffer large enough is taken again
    assert again is not None and again.obj is buf and len(again) == 600


def test_no_more_than_max_buffers_are_out_and_large_bodies_are_not_lent():
    h = Handoff()
    out = []
    for _ in range(MAX_BUFFERS):
        view = h.buffer(64)
        out.append(h.claim(view, REPLICATION))
    assert all(v is not None for v in out)
    assert h.buffer(64) is None  # the applier is behind: the queue takes it
    h.give_back(out.pop(), REPLICATION)
    assert h.buffer(64) is not None
    assert Handoff().buffer(MAX_BODY + 1) is None
    assert MAX_BODY <= 8 * MB


def test_only_the_buffer_just_lent_is_claimed_and_an_unclaimed_one_returns():
    h = Handoff()
    assert h.claim(bytearray(10), REPLICATION) is None
    for _ in range(MAX_BUFFERS + 2):  # each frame read but never claimed (a bad CRC, say)
        assert h.buffer(32) is not None
    view = h.buffer(32)
    assert h.claim(view, REPLICATION) is view


def test_a_buffer_still_viewed_is_not_reused():
    h = Handoff()
    view = h.claim(h.buffer(100), REPLICATION)
    held = memoryview(view)[:10]  # an export of the view itself
    kept = view.obj
    h.give_back(view, REPLICATION)
    assert h.bytes[REPLICATION] == 0
    assert h.buffer(100).obj is not kept
    held.release()


def test_closing_lets_the_free_buffers_go():
    h = Handoff()
    view = h.claim(h.buffer(100), MIRROR)
    kept = view.obj
    h.give_back(view, MIRROR)
    h.close()
    assert h.buffer(100).obj is not kept
