"""Mirrors and verify: compare the replication set with the target path and
send what differs."""
