"""The queues ops wait in: a native memory ring, a native journal on disk and
the replication queue that spills from one to the other."""
