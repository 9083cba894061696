"""Instructions per multiply-accumulate on the emulated architectures:
``python benchmarks/instructions.py [--arch aarch64,cortex-m4]``.

Under QEMU time means nothing, so this counts what the kernel executes instead
(:meth:`convgen.runtime.cross.ProgramKernel.instructions`: QEMU's block log, the kernel's own
function only) for each layer in the default profile (the cost model's schedule, its vector
extensions lowered by the cross compiler: NEON on AArch64, scalar code on the Cortex-M4F), in
the portable profile (the reference schedule) and in the mcu profile (the scalar schedule's
register blocks for convolutions, over weights packed in the caller's scratch), one sample
each; pools count per window element.  Every run is also judged against the exact oracle.
"""

import argparse
import sys

import numpy as np

import convgen
from convgen import codegen
from convgen.runtime.cross import ProgramKernel, toolchain
from convgen.verify import check_kernel, random_case

#: (name, layer, input shape per sample): small enough for a microcontroller.
LAYERS = [
    ("lenet_conv1", convgen.Conv2d(1, 6, 5), (1, 32, 32)),
    ("conv3x3_16", convgen.Conv2d(16, 16, 3, padding=1), (16, 16, 16)),
    ("depthwise3x3_32", convgen.Conv2d(32, 32, 3, padding=1, groups=32), (32, 16, 16)),
    ("pointwise_32_64", convgen.Conv2d(32, 64, 1), (32, 8, 8)),
    ("maxpool2x2_16", convgen.MaxPool2d(2), (16, 16, 16)),
]


def _work(layer, shape) -> int:
    """Multiply-accumulates of a convolution; window elements of a pool."""
    if isinstance(layer, convgen.MaxPool2d):
        out = layer.output_shape((1, *shape))
        return int(np.prod(out)) * int(np.prod(layer.kernel_size))
    return int(layer.macs(shape))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="aarch64,cortex-m4")
    args = parser.parse_args(argv)
    print(f"{'arch':10} {'layer':16} {'MACs':>8} {'default':>18} {'portable':>18} "
          f"{'mcu':>18} {'mcu/portable':>13}")
    for arch in args.arch.split(","):
        chain = toolchain(arch)
        for name, layer, shape in LAYERS:
            cells, per = [], []
            for profile in ("default", "portable", "mcu"):
                kernel = codegen.generate(layer, shape, name=f"k_{name}", profile=profile)
                built = ProgramKernel(kernel, chain)
                if not check_kernel(built, cases=1).passed:
                    raise SystemExit(f"{name} ({profile}) on {arch} disagrees with the oracle")
                inputs = random_case(built, np.random.default_rng(0), batch=1)
                count = built.instructions(*inputs)
                per.append(count / _work(layer, shape))
                cells.append(f"{kernel.schedule} {per[-1]:.2f}")
            print(f"{arch:10} {name:16} {_work(layer, shape):8,} {cells[0]:>18} {cells[1]:>18} "
                  f"{cells[2]:>18} {per[2] / per[1]:13.2f}", flush=True)
    print("instructions per multiply-accumulate (pools: per window element) in the kernel's "
          "function, one sample (the mcu profile's packing of the weights included); "
          "mcu/portable under 1: the mcu kernel executes fewer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
