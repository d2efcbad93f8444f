"""The source side: connections to targets, mirrors, verify and restore."""
