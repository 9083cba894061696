"""The layer benchmark: ``python benchmarks/bench.py [convgen bench options]``.

The same as ``convgen bench``: generated C kernels against ONNX Runtime, numpy (im2col +
BLAS) and PyTorch (when installed), at 1 and 2 threads, with the machine's sgemm peak and
copy bandwidth; prints the tables and, by default here, writes ``bench.json`` and
``bench.png`` in the current folder.
"""

import sys

from convgen.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--json" not in argv:
        argv += ["--json", "bench.json"]
    if "--png" not in argv:
        argv += ["--png", "bench.png"]
    sys.exit(main(["bench", *argv]))
