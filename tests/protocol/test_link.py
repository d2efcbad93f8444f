"""The link's life cycle."""
import socket

from dtcore.protocol.frames import Channel
from dtcore.protocol.link import Link


def test_a_link_closed_before_it_started():
    """A session stopped between making its link and starting it (the
    target stopping meanwhile) closes the link without error."""
    a, b = socket.socketpair()
    link = Link(Channel(a), "never started")
    link.close()
    assert b.recv(100)  # the BYE still went out
    b.close()
