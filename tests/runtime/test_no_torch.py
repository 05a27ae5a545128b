"""The device runtime must work without torch, train/ or export/: import it all and classify with both backends.

Runs in a fresh interpreter where those modules are blocked (`sys.modules[name] = None` makes importing them
raise ImportError). Walking the package with pkgutil covers modules added later without editing this test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    for blocked in ("torch", "torchvision", "edgecam.train", "edgecam.export"):
        sys.modules[blocked] = None

    import numpy as np
    import edgecam.runtime as runtime

    imported = [runtime.__name__]
    for mod in pkgutil.walk_packages(runtime.__path__, runtime.__name__ + "."):
        importlib.import_module(mod.name)
        imported.append(mod.name)

    from edgecam.runtime.model import Model
    from edgecam.runtime.types import Frame

    bundle, colours = sys.argv[1], json.loads(sys.argv[2])
    labels = {}
    for backend in ("openvino", "onnxruntime"):
        model = Model(bundle, backend=backend, threads=1)
        labels[backend] = [
            model.classify_frame(Frame(np.full((48, 64, 3), bgr, np.uint8)))[0].label for bgr in colours.values()
        ]
    leaked = sorted(m for m in sys.modules if m.split(".")[0] == "torch" and sys.modules[m] is not None)
    print(json.dumps({"imported": imported, "labels": labels, "leaked": leaked}))
    """
)


def test_runtime_imports_and_classifies_without_torch(tiny_bundle: Path, colours: dict):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_bundle), json.dumps(colours)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for expected in ("edgecam.runtime.model", "edgecam.runtime.sources", "edgecam.runtime.pipeline"):
        assert expected in result["imported"]
    assert any(name.startswith("edgecam.runtime.backends.") for name in result["imported"])
    assert result["labels"] == {"openvino": list(colours), "onnxruntime": list(colours)}
    assert result["leaked"] == []
