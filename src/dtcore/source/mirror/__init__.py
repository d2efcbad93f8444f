"""Mirrors and verify: compare the replication set with the target path and
send what differs.  ``options`` says what a mirror is asked and reports,
``plan`` decides (pure functions), ``send`` carries a file's plan out,
``verify`` compares without sending, ``orphans`` removes what the set lacks,
and ``run`` drives one mirror over a connection."""
from dtcore.source.mirror.options import (
                                          ATTRIBUTES,
                                          BLOCK,
                                          DIFFERENCE,
                                          FULL,
                                          ROLLING,
                                          SKIPPED,
                                          WHOLE,
                                          MirrorOptions,
                                          MirrorResult,
)
from dtcore.source.mirror.run import Mirror

__all__ = ["ATTRIBUTES", "BLOCK", "DIFFERENCE", "FULL", "Mirror", "MirrorOptions", "MirrorResult",
           "ROLLING", "SKIPPED", "WHOLE"]
