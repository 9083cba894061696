"""A stand-in for PyCUDA that runs the launched CUDA text on PoCL, so the GPU runtime
(``convgen.runtime.gpu``: contexts, argument order, launch geometry, device arrays, errors) is
exercised on machines without a GPU.  It checks what a real driver would reject: launching
without a current context, a grid or block of the wrong form, a module that is not a cubin.
"""

import sys
import types

import numpy as np

from convgen.runtime import pocl


class Error(Exception):
    pass


class _Context:
    stack: list = []

    def push(self):
        _Context.stack.append(self)

    @staticmethod
    def pop():
        _Context.stack.pop()

    @staticmethod
    def get_current():
        return _Context.stack[-1] if _Context.stack else None

    @staticmethod
    def synchronize():
        if not _Context.stack:
            raise Error("synchronize without a current context")

    @staticmethod
    def get_device():
        return _Device(0)


class _Device:
    def __init__(self, ordinal):
        self.ordinal = ordinal

    @staticmethod
    def count():
        return 1

    def compute_capability(self):
        return (9, 0)

    @staticmethod
    def name():
        return "Fake GPU (PoCL)"

    def retain_primary_context(self):
        return _Context()


class _Wrap:
    def __init__(self, array):
        self.array = array


class In(_Wrap):
    pass


class Out(_Wrap):
    pass


class _Allocation:
    def __init__(self, array):
        self.array = array


class GPUArray:
    def __init__(self, array):
        self.gpudata = _Allocation(np.ascontiguousarray(array))
        self.shape, self.dtype, self.flags = array.shape, array.dtype, self.gpudata.array.flags

    def get(self):
        return self.gpudata.array.copy()


class Module:
    kernels: dict = {}  # entry point -> CudaKernel, registered by the test

    def __init__(self, data):
        if not data.startswith(b"\x7fELF"):
            raise Error("not a cubin")

    def get_function(self, entry):
        return _Function(Module.kernels[entry], entry)


class _Function:
    def __init__(self, kernel, entry):
        self.kernel, self.entry = kernel, entry
        self.launches = []

    def __call__(self, *args, block, grid):
        if _Context.get_current() is None:
            raise Error("launch without a current context")
        if not (isinstance(block, tuple) and isinstance(grid, tuple) and len(grid) == 3
                and all(type(v) is int for v in block + grid)):
            raise Error(f"block {block!r} and grid {grid!r} must be tuples of ints")
        schedule = next(x.schedule for x in self.kernel.launches if x.entry == self.entry)
        runner = pocl.CpuKernel(self.kernel, "pocl", schedule)
        assert block == (runner.launch.block, 1, 1) and grid == runner.launch.grid(int(args[-1]))
        arrays = [a.array for a in args[:-1]]
        outputs = [a for a in args[:-1] if isinstance(a, Out) or
                   any(a is o for o in _OUTPUTS)]
        count = len(arrays) - len(outputs)
        runner._run(arrays[:count], arrays[count:], int(args[-1]))
        self.launches.append((block, grid))
        _NOW[0] += LAUNCH_MS


#: The fake device's clock in milliseconds: each launch takes LAUNCH_MS of it.
_NOW = [0.0]
LAUNCH_MS = 0.25


class Event:
    """A CUDA event on the fake clock: the time of its last ``record``."""

    def __init__(self, flags=0):
        self.time = None

    def record(self, stream=None):
        if _Context.get_current() is None:
            raise Error("event recorded without a current context")
        self.time = _NOW[0]
        return self

    def synchronize(self):
        if self.time is None:
            raise Error("synchronize on an event never recorded")
        return self

    def time_till(self, end):
        if self.time is None or end.time is None:
            raise Error("time_till between events not both recorded")
        return end.time - self.time


_OUTPUTS: list = []


def _empty(shape, dtype):
    array = GPUArray(np.empty(shape, dtype))
    _OUTPUTS.append(array.gpudata)
    return array


def install(monkeypatch, kernels):
    """Make ``import pycuda.driver`` and ``from pycuda import gpuarray`` find this fake."""
    Module.kernels = {x.entry: k for k in kernels for x in k.launches}
    _Context.stack = []
    driver = types.SimpleNamespace(
        Error=Error, init=lambda: None, Device=_Device, Context=_Context, In=In, Out=Out,
        module_from_buffer=Module, Event=Event)
    gpuarray = types.SimpleNamespace(GPUArray=GPUArray, to_gpu=GPUArray, empty=_empty)
    package = types.ModuleType("pycuda")
    package.driver, package.gpuarray = driver, gpuarray
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    monkeypatch.setitem(sys.modules, "pycuda.gpuarray", gpuarray)
