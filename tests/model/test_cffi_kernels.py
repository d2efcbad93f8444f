"""The plain C library of csrc/, built on its own and called through cffi:
proves the kernels need no Python and keeps their status codes honest."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import xxhash

cffi = pytest.importorskip("cffi")
ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"

CDEF = """
typedef struct dt_err { const char *what; int64_t index, offset, expected, actual; int sys_errno; } dt_err;
typedef struct dt_insn { int64_t target_offset; int64_t length; } dt_insn;
uint64_t dt_xxh3_64(const uint8_t *data, size_t len);
int dt_checksum_buf(const uint8_t *buf, size_t len, size_t block, uint64_t *out, dt_err *err);
int dt_delta_apply(const uint8_t *target, size_t target_len, const dt_insn *insns, size_t ninsns,
                   const uint8_t *literals, size_t literals_len, uint8_t *out, size_t out_len,
                   dt_err *err);
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if not shutil.which("gcc"):
        pytest.skip("gcc not available")
    so = tmp_path_factory.mktemp("clib") / "libdtcore.so"
    sources = [str(CSRC / c) for c in ("dt_xxh3.c", "dt_checksum.c", "dt_delta.c")]
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-std=c11", "-I", str(CSRC), "-o", str(so),
                    *sources], check=True, timeout=120)
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    return ffi, ffi.dlopen(str(so))


def test_hash_through_the_c_abi(lib):
    ffi, c = lib
    for n in (0, 5, 100, 200, 5000):
        data = os.urandom(n)
        assert c.dt_xxh3_64(ffi.from_buffer("uint8_t[]", data), n) == xxhash.xxh3_64_intdigest(data)


def test_status_codes_through_the_c_abi(lib):
    ffi, c = lib
    err = ffi.new("dt_err *")
    out = ffi.new("uint64_t[1]")
    assert c.dt_checksum_buf(ffi.new("uint8_t[4]"), 4, 0, out, err) == -1  # DT_E_ARG
    assert ffi.string(err.what) == b"block size out of range"
    insn = ffi.new("dt_insn[1]", [(90, 20)])
    buf = ffi.new("uint8_t[100]")
    assert c.dt_delta_apply(buf, 100, insn, 1, buf, 0, buf, 20, err) == -5  # DT_E_RANGE
    assert err.index == 0 and err.expected == 100
