"""Build time and memory of the ImageNet-stem Toeplitz operator.

    python benchmarks/toeplitz_stem.py [--repeat 3]

Builds ``Conv2d(3, 64, 7, stride=2, padding=3)`` on 3x224x224 as a ``scipy.sparse`` CSR
matrix (float32 weights) and prints the median build time, the matrix's own memory
(data + indices + indptr) and the process's peak resident memory.
"""

import argparse
import resource
import statistics
import time

import numpy as np

import convgen
from convgen.toeplitz import toeplitz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    layer = convgen.Conv2d(3, 64, 7, stride=2, padding=3)
    weight = np.random.default_rng(0).standard_normal(layer.weight_shape).astype(np.float32)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        matrix = toeplitz(layer, (3, 224, 224), weight=weight)
        times.append(time.perf_counter() - start)
        del matrix
    matrix = toeplitz(layer, (3, 224, 224), weight=weight)
    size = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(f"{layer.describe()} on (3, 224, 224)")
    print(f"matrix {matrix.shape[0]:,} x {matrix.shape[1]:,}, {matrix.nnz:,} nonzeros "
          f"({matrix.data.dtype}, {matrix.indices.dtype} indices)")
    print(f"build time: median {statistics.median(times):.2f} s over {args.repeat} "
          f"(min {min(times):.2f} s, max {max(times):.2f} s)")
    print(f"matrix memory {size / 2**20:,.0f} MiB; peak RSS {peak / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
