"""The reader lends at most a few buffers to the applier; a body it does not
claim, or one too large, goes through the queue."""
from dtcore.queues.records import MB, MIRROR, REPLICATION
from dtcore.target.handoff import MAX_BODY, MAX_BUFFERS, Handoff

ROOM = 64 * MB


def _buffer(h, length, room=ROOM):
    return h.buffer(length, room)


def test_buffers_circulate_and_are_reused():
    h = Handoff()
    view = _buffer(h, 1000)
    assert view is not None and len(view) == 1000 and not view.readonly
    view[:3] = b"abc"
    assert h.claim(view, MIRROR) is view
    assert h.bytes == {REPLICATION: 0, MIRROR: 1000}
    buf = view.obj
    h.give_back(view, MIRROR)
    assert h.bytes[MIRROR] == 0
    again = _buffer(h, 600)  # a free buffer large enough is taken again
    assert again is not None and again.obj is buf and len(again) == 600


def test_no_more_than_max_buffers_are_out_and_large_bodies_are_not_lent():
    h = Handoff()
    out = []
    for _ in range(MAX_BUFFERS):
        view = _buffer(h, 64)
        out.append(h.claim(view, REPLICATION))
    assert all(v is not None for v in out)
    assert _buffer(h, 64) is None  # the applier is behind: the queue takes it
    h.give_back(out.pop(), REPLICATION)
    assert _buffer(h, 64) is not None
    assert _buffer(Handoff(), MAX_BODY + 1) is None
    assert MAX_BODY <= 8 * MB


def test_only_the_buffer_just_lent_is_claimed_and_an_unclaimed_one_returns():
    h = Handoff()
    assert h.claim(bytearray(10), REPLICATION) is None
    for _ in range(MAX_BUFFERS + 2):  # each frame read but never claimed (a bad CRC, say)
        assert _buffer(h, 32) is not None
    view = _buffer(h, 32)
    assert h.claim(view, REPLICATION) is view


def test_a_buffer_still_viewed_is_not_reused():
    h = Handoff()
    view = h.claim(_buffer(h, 100), REPLICATION)
    held = memoryview(view)[:10]  # an export of the view itself
    kept = view.obj
    h.give_back(view, REPLICATION)
    assert h.bytes[REPLICATION] == 0
    assert _buffer(h, 100).obj is not kept
    held.release()


def test_closing_lets_the_free_buffers_go():
    h = Handoff()
    view = h.claim(_buffer(h, 100), MIRROR)
    kept = view.obj
    h.give_back(view, MIRROR)
    h.close()
    assert _buffer(h, 100).obj is not kept


def test_a_body_the_queue_would_have_spilled_is_not_held_beside_it():
    h = Handoff()
    first = h.claim(_buffer(h, 600, room=1000), REPLICATION)
    assert first is not None
    assert _buffer(h, 600, room=1000) is None  # 1200 bytes would pass the room
    assert _buffer(h, 300, room=1000) is not None
    assert Handoff().buffer(10, 0) is None  # the queue spills already
