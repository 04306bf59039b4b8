"""Run ``ENTRY(*ARGS)`` of the program file PATH with ``ustack.run`` (the
stack from USTACK_IFACE / USTACK_ADDRESS): ``under_run.py PATH ENTRY [ARGS]``."""

import importlib.util
import sys

import ustack

path, entry, *args = sys.argv[1:]
spec = importlib.util.spec_from_file_location("program", path)
assert spec is not None and spec.loader is not None
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.argv = [path, *args]
result = ustack.run(getattr(module, entry)(*args) if entry != "main" else module.main())
sys.exit(result if isinstance(result, int) else 0)
