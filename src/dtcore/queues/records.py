"""What every queue holds: records (packed op batches), each carrying its op
count and its kind, replication or mirror, so the queues keep the guide's
connection counters (conOpsInRepQueue, conBytesInMirQueue, ...)."""
from __future__ import annotations

REPLICATION, MIRROR = 0, 1
MB = 1 << 20
