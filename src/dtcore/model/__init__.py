"""The data model shared by both ends: ops and their batches, manifests,
replication sets, block checksums, the rolling delta and payload compression."""
