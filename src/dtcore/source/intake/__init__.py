"""Where replication ops come from: files written through the API."""
