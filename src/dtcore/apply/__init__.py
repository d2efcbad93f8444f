"""Ops applied to files beneath a root that no path can escape: the safe
root, the retrying applier, and the lanes that apply a stream of ops over
several threads.  The target applies what sources send with it; a restore
applies what it fetches from a target the same way."""

# Lanes applying one connection's ops (dtcore target --apply-threads): file
# creation is kernel work that two cores share well, and a lane waiting on
# the disk leaves the core to another.
APPLY_THREADS = 4
