"""Import kserve safely: ``kserve.model_server`` parses ``sys.argv`` when first imported.

    kserve = import_kserve()          # kserve.Model, kserve.ModelServer, kserve.InferRequest, ...

Under ``diffucoder serve --model /mnt/models`` that parse would read our flags as its own
(``--model`` abbreviates its ``--model_name``) or exit on an ambiguous one, so the first
import sees an empty command line.
"""
from __future__ import annotations

import importlib
import sys


def import_kserve():
    if "kserve.model_server" not in sys.modules:
        saved = sys.argv
        sys.argv = saved[:1] if saved else ["diffucoder"]
        try:
            importlib.import_module("kserve.model_server")
        finally:
            sys.argv = saved
    return importlib.import_module("kserve")
