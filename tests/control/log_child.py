"""A process that writes numbered lines to an engine log (for the
two-process test)."""
import sys

from dtcore.control.enginelog import EngineLog

if __name__ == "__main__":
    directory, tag, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with EngineLog(directory, max_size=size, max_files=999) as log:
        for i in range(count):
            log.write(f"{tag} line {i} " + "x" * 40, msg_id=100 + i % 5)
