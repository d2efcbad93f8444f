"""Build the native extensions: csrc/*.c compiled into Cython modules.

Environment switches:
  DTCORE_NATIVE=1   add -march=native (faster, not portable to other CPUs)
  DTCORE_WERROR=1   warnings are errors
  DTCORE_DEBUG=1    -O0 -g, Cython bounds checks on
  DTCORE_SANITIZE=address   build with AddressSanitizer (run with libasan preloaded)
"""
import os
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup

CSRC = "csrc"
HEADERS = glob(os.path.join(CSRC, "*.h"))

debug = os.environ.get("DTCORE_DEBUG") == "1"
sanitize = os.environ.get("DTCORE_SANITIZE", "")
cflags = ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-function"]
cflags += ["-O0", "-g"] if debug else ["-O3"]
ldflags = []
if os.environ.get("DTCORE_NATIVE") == "1":
    cflags.append("-march=native")
if os.environ.get("DTCORE_WERROR") == "1":
    cflags.append("-Werror")
if sanitize:
    cflags += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g"]
    ldflags.append(f"-fsanitize={sanitize}")

# Each binding and the C files it wraps.
MODULES = {
    "_checksum": ["dt_xxh3.c", "dt_checksum.c"],
    "_delta": ["dt_xxh3.c", "dt_checksum.c", "dt_delta.c"],
    "_ops": ["dt_ops.c", "dt_merge.c"],
    "_compress": ["dt_compress.c"],
    "_queue": ["dt_crc32c.c", "dt_memq.c", "dt_journal_format.c", "dt_journal_write.c",
               "dt_journal_read.c", "dt_journal_recover.c"],
    "_walk": ["dt_xxh3.c", "dt_walk.c"],
    "_fanotify": ["dt_fanotify.c"],
    "_smallfiles": ["dt_ops.c", "dt_pack_files.c", "dt_apply_files.c"],
}
# System libraries a binding links (Debian: liblz4-dev, installed by `make`).
LIBRARIES = {"_compress": ["lz4"]}

_include_dirs = ["/usr/include", "/usr/local/include"] + [
    d for var in ("CPATH", "C_INCLUDE_PATH") for d in os.environ.get(var, "").split(":") if d]
if not any(os.path.exists(os.path.join(d, "lz4.h")) for d in _include_dirs):
    raise SystemExit("dtcore needs the lz4 C library headers: apt-get install liblz4-dev "
                     "(`make venv` does this when run as root)")

extensions = [
    Extension(
        f"dtcore._native.{name}",
        sources=[f"src/dtcore/_native/{name}.pyx"] + [os.path.join(CSRC, c) for c in csources],
        include_dirs=[CSRC],
        depends=HEADERS + ["src/dtcore/_native/_c.pxd"],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
        libraries=LIBRARIES.get(name, []),
    )
    for name, csources in MODULES.items()
]

directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": False,
    "initializedcheck": debug,
    "cdivision": True,
    "embedsignature": True,
}

setup(ext_modules=cythonize(extensions, compiler_directives=directives, include_path=["src"]))
