"""Ops applied to files beneath a root that no path can escape: the safe
root, the retrying applier, and the lanes that apply a stream of ops over
several threads.  The target applies what sources send with it; a restore
applies what it fetches from a target the same way."""
