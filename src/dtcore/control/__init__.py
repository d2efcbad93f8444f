"""The control plane: settings and DT.conf, events, the engine log and the
statistics (counters, statistic.sts, the statistics server)."""
