"""ustack's optional compiled build (docs/compiled.md).

Everything else is in pyproject.toml.  The optional extras, all built by
``pip install [-e] .`` and ``python setup.py build_ext --inplace``:

* the hot modules (ustack/tcp, tcp/congestion, wire, net, driver, link)
  compiled by mypyc from the same ``mypy --strict`` source into one shared library
  ``ustack._accel__mypyc`` plus one small extension per module;
* ustack.wire._csum (the RFC 1071 sum), ustack.link._batch (sendmmsg for
  AfPacketDevice.send_many) and ustack.driver._synbatch (the SYN channel's
  batch steps).

Each one is optional: without mypy/mypyc, without a C compiler, or when
mypyc refuses a module, the build prints a warning and ustack installs pure
Python (same behaviour, slower).  At run time ``USTACK_NO_ACCEL=1`` forces
pure Python for all of them, and a compiled module whose source changed after
the build is never used (ustack/__init__.py checks the sha256 of every
compiled source against ``ustack/_accel_manifest.json``).

Knobs (environment): ``USTACK_BUILD_NO_ACCEL=1`` skips every extra;
``USTACK_BUILD_NO_MYPYC=1`` skips only the mypyc part;
``MYPYC_OPT_LEVEL`` (default 3) is the C optimisation level;
``USTACK_MYPYC_DIRS="tcp tcp/congestion wire"`` compiles other folders
(to measure what a folder gives).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
#: the folders whose modules are compiled (docs/compiled.md "What is compiled")
HOT_DIRS = ("ustack/tcp", "ustack/tcp/congestion", "ustack/wire", "ustack/net",
            "ustack/driver", "ustack/link")
#: modules mypyc cannot compile (or that must stay interpreted), with why
EXCLUDED = {
    # TransitionError(AssertionError): mypyc subclasses only a few builtins
    "ustack/tcp/state.py",
    # StampedBatch(list): same; and its __iter__ override (which sets the
    # arrival stamp frame by frame) must stay a real method: compiled code
    # iterating a list[...] would index the list and skip it
    "ustack/link/rxtime.py",
    # test helpers: tests patch and subclass what they hold
    "ustack/tcp/testing.py",
}
GROUP = "ustack._accel"            # the shared library: ustack/_accel__mypyc*.so
MANIFEST = "ustack/_accel_manifest.json"


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def hot_dirs() -> tuple[str, ...]:
    """HOT_DIRS, or the folders (under ustack/) ``USTACK_MYPYC_DIRS`` lists
    (comma or space separated; to measure what compiling more would give)."""
    chosen = os.environ.get("USTACK_MYPYC_DIRS", "").replace(",", " ").split()
    return tuple(f"ustack/{d.strip('/').removeprefix('ustack/')}" for d in chosen) or HOT_DIRS


def hot_sources() -> list[str]:
    """The compiled sources, relative to the project root, sorted."""
    out = []
    for folder in hot_dirs():
        for path in sorted((ROOT / folder).glob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if path.name != "__init__.py" and rel not in EXCLUDED:
                out.append(rel)
    return out


def _warn(msg: str) -> None:
    print(f"WARNING: ustack compiled build: {msg}; installing pure Python for it "
          "(same behaviour, slower)", file=sys.stderr)


#: setup.py commands that only write metadata (never compile)
METADATA_ONLY = frozenset({"egg_info", "dist_info", "sdist", "--name", "--version"})
_MYPYC: list[Extension] | None = None
_HASHES: dict[str, str] = {}
_STATS: dict[str, list[int]] = {}    # (size, mtime_ns): lets ustack skip hashing


def _mypyc_extensions() -> list[Extension]:
    """mypycify the hot modules, once per process; [] (and a warning) when
    mypyc is missing or refuses the code, or a knob says no."""
    global _MYPYC
    if _MYPYC is not None:
        return _MYPYC
    _MYPYC = []
    _HASHES.clear()
    _STATS.clear()
    if _flag("USTACK_BUILD_NO_ACCEL") or _flag("USTACK_BUILD_NO_MYPYC"):
        return _MYPYC
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypy/mypyc is not installed (pip install mypy)")
        return _MYPYC
    for rel in hot_sources():  # what the C is generated from, before generating it
        name = rel[:-3].replace("/", ".")
        st = (ROOT / rel).stat()
        _STATS[name] = [st.st_size, st.st_mtime_ns]
        _HASHES[name] = hashlib.sha256((ROOT / rel).read_bytes()).hexdigest()
    cwd = os.getcwd()
    os.chdir(ROOT)  # mypy reads pyproject.toml's [tool.mypy] from here
    try:
        # the build environment lacks ustack's dependencies (uvloop, numpy,
        # dpkt: Any to mypy here), so ignores written for them may be unused;
        # modules that are not compiled are type-checked silently
        exts = mypycify(["--follow-imports=silent", "--no-warn-unused-ignores", *hot_sources()],
                        opt_level=os.environ.get("MYPYC_OPT_LEVEL", "3"),
                        group_name=GROUP, target_dir=str(ROOT / "build" / "mypyc"))
    except (Exception, SystemExit) as exc:  # mypy errors end in sys.exit
        _warn(f"mypyc failed ({exc!r})")
        return _MYPYC
    finally:
        os.chdir(cwd)
    for ext in exts:
        ext.sources = [s if os.path.isabs(s) else str(ROOT / s) for s in ext.sources]
    _MYPYC = exts
    return _MYPYC


class BuildExt(build_ext):
    """build_ext that adds the mypyc extensions when it is set up for a build
    (not for pip's metadata steps) and treats each part as optional."""

    def finalize_options(self) -> None:
        # egg_info/dist_info/sdist finalize build_ext only to list sources:
        # no mypy run for them (pip's metadata steps), only for a build
        building = METADATA_ONLY.isdisjoint(sys.argv[1:])
        self._mypyc = _mypyc_extensions() if building else []
        self.distribution.ext_modules = [*(self.distribution.ext_modules or []),
                                         *[e for e in self._mypyc
                                           if e not in (self.distribution.ext_modules or [])]]
        super().finalize_options()

    def run(self) -> None:
        self._mypyc_ok = False
        super().run()
        self._write_manifest(self._mypyc if self._mypyc_ok else None)

    def copy_file(self, infile: Any, outfile: Any, *args: Any, **kwargs: Any) -> Any:
        """An in-place copy replaces the file (a new inode) instead of writing
        into it: a process that has the old .so mapped (a test run, a stack)
        would crash on a library rewritten under it."""
        out = Path(outfile)
        if not self.inplace or not str(infile).endswith(".so") or out.is_dir():
            return super().copy_file(infile, outfile, *args, **kwargs)
        tmp = out.with_name(f".{out.name}.tmp")
        result = super().copy_file(infile, str(tmp), *args, **kwargs)
        os.replace(tmp, out)
        return (str(out), result[1]) if isinstance(result, tuple) else result

    def build_extensions(self) -> None:
        mypyc = self._mypyc
        every = self.extensions
        self.extensions = [e for e in every if e not in mypyc]
        try:
            super().build_extensions()  # the optional C helpers: failures are warnings
        finally:
            self.extensions = every     # copy_extensions_to_source copies these
        if not mypyc:
            return
        # the shared library first: module shims without it would not import
        lib = [e for e in mypyc if e.name.endswith("__mypyc")]
        shims = [e for e in mypyc if not e.name.endswith("__mypyc")]
        try:
            for ext in lib + shims:
                self.build_extension(ext)
        except Exception as exc:  # a compiler error: no half-built accelerator
            _warn(f"compiling the mypyc output failed ({exc!r})")
            self.extensions = [e for e in every if e not in mypyc]
            for ext in mypyc:
                path = Path(self.get_ext_fullpath(ext.name))
                path.unlink(missing_ok=True)
            return
        self._mypyc_ok = True

    def _write_manifest(self, mypyc: list[Extension] | None) -> None:
        """Record the sha256 of every compiled source next to the extensions:
        ustack/__init__.py refuses a compiled module whose source differs."""
        targets = [Path(self.build_lib) / MANIFEST]
        if self.inplace:
            targets.append(ROOT / MANIFEST)
        if self.inplace:
            self._remove_leftovers(set() if mypyc is None else set(_HASHES))
        if mypyc is None:
            for target in targets:
                target.unlink(missing_ok=True)
            return
        data: dict[str, Any] = {
            "format": 1,
            "group": f"{GROUP}__mypyc",
            "opt_level": os.environ.get("MYPYC_OPT_LEVEL", "3"),
            "modules": _HASHES,
            "stats": _STATS,
        }
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")

    def _remove_leftovers(self, keep: set[str]) -> None:
        """Delete compiled modules an earlier in-place build (or the mypyc
        command line) left that this build did not produce: each would
        shadow its .py.  The C helpers (names starting with _) stay."""
        suffix = Path(self.get_ext_filename("ustack.x")).name[1:]
        for so in (ROOT / "ustack").rglob(f"*{suffix}"):
            rel = so.relative_to(ROOT).as_posix()[: -len(suffix)]
            if so.name.startswith("_") or not (ROOT / f"{rel}.py").exists():
                continue
            if rel.replace("/", ".") not in keep:
                so.unlink()
        if not keep:
            for so in (ROOT / "ustack").glob(f"_accel__mypyc{suffix}"):
                so.unlink()
        for so in ROOT.glob(f"*__mypyc{suffix}"):  # the mypyc command line's library
            so.unlink()

ext_modules = []
if not _flag("USTACK_BUILD_NO_ACCEL"):
    ext_modules.append(Extension("ustack.wire._csum", ["ustack/wire/_csum.c"], optional=True,
                                 extra_compile_args=["-O2"]))
    ext_modules.append(Extension("ustack.link._batch", ["ustack/link/_batch.c"], optional=True,
                                 extra_compile_args=["-O2"]))
    ext_modules.append(Extension("ustack.driver._synbatch", ["ustack/driver/_synbatch.c"],
                                 optional=True, extra_compile_args=["-O2"]))

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
