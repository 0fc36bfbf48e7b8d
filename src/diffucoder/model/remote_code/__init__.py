"""The model code every saved model carries, for loading without diffucoder.

    from diffucoder.model.remote_code import AUTO_MAP, REMOTE_CODE_FILES
    AUTO_MAP            # {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"}
    REMOTE_CODE_FILES   # the two module files ``save_model`` copies beside config.json

``configuration_dream.py`` and ``modeling_dream.py`` import only torch and transformers; with
``trust_remote_code=True`` transformers runs them from the model directory, as it runs the
released Dream/DiffuCoder checkpoints' own code (the same ``auto_map``). They compute the
same logits as ``diffucoder.model.DreamModel`` (tests/model/test_export_remote_code.py checks it
in a virtual environment without diffucoder).
"""
from pathlib import Path

AUTO_MAP = {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"}
REMOTE_CODE_FILES = tuple(Path(__file__).parent / name for name in ("configuration_dream.py", "modeling_dream.py"))
