"""Optional C accelerators (ustack.wire._csum, the RFC 1071 sum;
ustack.link._batch, sendmmsg for AfPacketDevice.send_many; ustack.driver._synbatch,
the SYN channel's batch steps).

Everything else is in pyproject.toml.  The extension is ``optional``: without
a C compiler or Python headers the build prints a warning and ustack installs
without them; ustack then uses its pure-Python fallbacks (same results,
slower).  USTACK_NO_ACCEL=1 forces the fallback at run time, and
USTACK_BUILD_NO_ACCEL=1 skips building it.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if not os.environ.get("USTACK_BUILD_NO_ACCEL"):
    ext_modules.append(Extension("ustack.wire._csum", ["ustack/wire/_csum.c"], optional=True,
                                 extra_compile_args=["-O2"]))
    ext_modules.append(Extension("ustack.link._batch", ["ustack/link/_batch.c"], optional=True,
                                 extra_compile_args=["-O2"]))
    ext_modules.append(Extension("ustack.driver._synbatch", ["ustack/driver/_synbatch.c"],
                                 optional=True, extra_compile_args=["-O2"]))

setup(ext_modules=ext_modules)
