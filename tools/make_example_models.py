"""Write the bundled ONNX models (convgen/examples/*.onnx) from the seeded builders of
tests/onnx_models.py: ``python tools/make_example_models.py``.  Deterministic: the same
bytes each run, so ``convgen generate --check`` keeps generated/ reproducible."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import onnx_models  # noqa: E402

MODELS = {"lenet5_network": onnx_models.lenet5}

if __name__ == "__main__":
    for name, build in MODELS.items():
        path = ROOT / "convgen" / "examples" / f"{name}.onnx"
        path.write_bytes(build(seed=0).SerializeToString())
        print(f"wrote {path.relative_to(ROOT)}")
