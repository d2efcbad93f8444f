# The two commands README promises: `make demo` and `make test`.  Each creates
# or reuses .venv and builds the native extensions first.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.dtcore-installed

.PHONY: venv build test-tools demo test test-slow bench bench-mirror bench-replication bench-watch bench-startup bench-scale bench-compression asan clean

# The one system package the build needs: the lz4 C library's headers.
LZ4_HEADER := /usr/include/lz4.h

$(LZ4_HEADER):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && apt-get install -y -q liblz4-dev; \
	else \
		echo "dtcore needs liblz4-dev: sudo apt-get install liblz4-dev" >&2; exit 1; \
	fi

$(STAMP): pyproject.toml setup.py | $(LZ4_HEADER)
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel Cython
	$(VPY) -m pip install -q --no-build-isolation -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The real clients the tests talk to: Prometheus (a scrape and promtool), a
# headless browser for the service view, and NET-SNMP (snmpd as the AgentX
# master, snmpget/snmpwalk, snmptrapd).
TEST_PACKAGES := prometheus chromium snmpd snmp snmptrapd
TEST_TOOLS := /usr/bin/prometheus /usr/bin/promtool /usr/bin/chromium /usr/sbin/snmpd \
	/usr/bin/snmpget /usr/sbin/snmptrapd

$(TEST_TOOLS):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(TEST_PACKAGES); \
	else \
		echo "the tests need $(TEST_PACKAGES): sudo apt-get install $(TEST_PACKAGES)" >&2; \
	fi

test-tools: $(TEST_TOOLS)

# Incremental: recompiles only what changed in csrc/ or src/dtcore/_native/.
build: $(STAMP)
	$(VPY) setup.py -q build_ext --inplace -j 2

demo: build
	$(VPY) -m dtcore.cli.demo

test: build test-tools
	$(VPY) -m pytest

test-slow: build test-tools
	HYPOTHESIS_PROFILE=thorough $(VPY) -m pytest -m slow

# Benchmarks against the installed environment; results land in bench-results/.
bench: build
	cd benchmarks && ../$(VPY) -m asv machine --yes --config asv.conf.json >/dev/null
	cd benchmarks && ../$(VPY) -m asv run --config asv.conf.json -E existing:$(abspath $(VPY)) \
		--set-commit-hash $$(git rev-parse HEAD) --record-samples
	$(VPY) benchmarks/summarize.py

# Mirror vs rsync (Debian's rsync, installed when missing) on a ~1.4 GB dataset.
bench-mirror: build
	@command -v rsync >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q rsync; } || \
		{ echo "the mirror benchmark needs rsync: sudo apt-get install rsync" >&2; exit 1; }
	$(VPY) -m benchmarks.mirror_summary --scale 1.0 --runs 5

# Difference mirrors, profiles and first copies by file count vs rsync
# (Debian's rsync, installed when missing), with each side's peak RSS: on the
# disk (to a million files), then on a tmpfs where creating a file costs no disk
# time (about 20 minutes).  Both runs happen; the target fails if either missed a goal.
bench-scale: build
	@command -v rsync >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q rsync; } || \
		{ echo "the scale benchmark needs rsync: sudo apt-get install rsync" >&2; exit 1; }
	$(VPY) -m benchmarks.scale --files 10000 100000 1000000 --runs 3; disk=$$?; \
	$(VPY) -m benchmarks.scale --files 100000 400000 --runs 3 --work /dev/shm --name scale_tmpfs; \
	tmpfs=$$?; exit $$((disk | tmpfs))

# Compression that decides by itself: full mirrors through a throttling proxy
# at 100 Mbit/s and 1 Gbit/s and over loopback, auto vs always vs never.
bench-compression: build
	$(VPY) -m benchmarks.compression_link --runs 3

# Start-up of the commands, as processes against `python -c pass` (a minute).
bench-startup: build
	$(VPY) -m benchmarks.startup

# Live replication: intake, end to end on loopback, lag (about a minute).
bench-replication: build
	$(VPY) -m benchmarks.replication_summary

# dtcore replicate vs lsyncd with an rsync daemon (Debian's lsyncd and rsync,
# installed when missing): lag, convergence, wire bytes, CPU (about 10 minutes).
bench-watch: build
	@command -v lsyncd >/dev/null && command -v rsync >/dev/null || \
		{ [ "$$(id -u)" = 0 ] && apt-get install -y -q lsyncd rsync; } || \
		{ echo "the watch benchmark needs lsyncd and rsync: sudo apt-get install lsyncd rsync" >&2; exit 1; }
	$(VPY) -m benchmarks.watch_vs_lsyncd

# Native tests once under AddressSanitizer (extensions rebuilt, then restored).
asan: $(STAMP)
	DTCORE_SANITIZE=address DTCORE_DEBUG=1 $(VPY) setup.py -q build_ext --inplace --force -j 2
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
		$(VPY) -m pytest -p no:cacheprovider tests/model/test_checksum.py tests/model/test_delta.py \
		tests/model/test_ops.py tests/model/test_merge.py tests/model/test_compression.py; \
		rc=$$?; $(VPY) setup.py -q build_ext --inplace --force -j 2; exit $$rc

clean:
	rm -rf build src/dtcore/_native/*.so src/dtcore/_native/*.c
