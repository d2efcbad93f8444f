"""What crosses the wire: frames, the handshake, TLS, the link that
dispatches frames, and the typed request and reply bodies."""
