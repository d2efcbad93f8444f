"""The target side: the service, one session per source, the requests it
answers and the target data states."""
