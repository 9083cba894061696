"""The Python callable every compiled kernel is, whatever runs it (C, GPU, OpenCL on a CPU).

:class:`KernelCall` checks the arrays a call gets (dtype, shape, contiguity: nothing is
converted or copied), allocates the outputs and hands both to the target's :meth:`_run`.
The bottom of :mod:`convgen.runtime`: it imports only NumPy and :mod:`convgen.errors`.
"""

from __future__ import annotations

import abc

import numpy as np

from ..errors import SpecError

__all__ = ["KernelCall", "distinct"]


class KernelCall(abc.ABC):
    """What every compiled kernel does as a Python callable on NumPy arrays.

    ``kernel(x, weight, bias=None) -> y`` for convolutions (PyTorch's weight layouts; ``bias``
    required exactly when the layer has one), ``kernel(x) -> y`` for pools, ``(y, indices)``
    with ``return_indices``.  ``x`` is ``(N, C, *spatial)`` with the spatial sizes the kernel
    was generated for, or a single sample ``(C, *spatial)``: then the outputs have no batch
    dimension either (as PyTorch's modules do).  Arrays must have the kernel's dtype and be
    C-contiguous: nothing is converted or copied behind your back.

    ``out=y`` (``out=(y, indices)`` with ``return_indices``) writes into the caller's arrays
    and returns ``out``: checked like the inputs, writeable, of the output's shape, sharing no
    memory with an input.  :meth:`bind` checks once and returns a call without checks.
    Targets implement :meth:`_run`.
    """

    target = ""

    def __init__(self, generated):
        self.generated = generated
        self._expect = None
        self._indices = "indices" in generated.arguments  # (y, indices) is returned
        self._output_shape = tuple(generated.output_shape)

    @property
    def name(self) -> str:
        return self.generated.name

    def __repr__(self) -> str:
        g = self.generated
        return (f"<convgen {self.target} kernel {g.name}: {g.layer.describe()} on "
                f"{g.input_shape}, {g.dtype}>")

    def _array(self, label: str, value, shape: tuple, dtype=None):
        g = self.generated
        if type(value) is not np.ndarray:  # a subclass may report a shape it does not have
            subclass = " (not a subclass; pass numpy.asarray(...) yourself)" \
                if isinstance(value, np.ndarray) else ""
            raise SpecError(f"{g.name}: {label} must be a numpy.ndarray{subclass}, got "
                            f"{type(value).__name__}")
        if value.dtype != (dtype or np.dtype(g.dtype)):
            expected = f"expected {dtype}" if dtype else f"the kernel was generated for {g.dtype}"
            raise SpecError(f"{g.name}: {label} has dtype {value.dtype}; {expected}")
        if value.shape != shape:
            raise SpecError(f"{g.name}: {label} has shape {value.shape}; expected {shape}")
        if not value.flags.c_contiguous:
            raise SpecError(f"{g.name}: {label} is not C-contiguous; pass "
                            "numpy.ascontiguousarray(...) yourself (no silent copies)")
        return value

    def _dtype(self, argument: str):
        """The dtype of ``argument`` when it is not the kernel's own (quantized convolutions'
        weights, bias and output), else None."""
        g = self.generated
        dtype = g.dtype_of(argument)
        return None if dtype == g.dtype else np.dtype(dtype)

    def _expected(self) -> tuple:
        """(x's dtype, x's shape without the batch, weight's shape or None, bias's or None,
        the dtypes of the inputs in argument order, y's dtype)."""
        g = self.generated
        inputs = [a for a in ("x", "w", "b") if a in g.arguments]
        return (np.dtype(g.dtype), tuple(g.input_shape),
                tuple(g.layer.weight_shape) if "w" in g.arguments else None,
                (g.layer.out_channels,) if "b" in g.arguments else None,
                tuple(np.dtype(g.dtype_of(a)) for a in inputs), np.dtype(g.dtype_of("y")))

    def _accepted(self, x, weight, bias):
        """The input arrays when all of them are exactly what the kernel takes, else None
        (then :meth:`_inputs` finds the error): the cheap check every call makes."""
        if self._expect is None:
            self._expect = self._expected()
        _, x_shape, w_shape, b_shape, dtypes, _ = self._expect
        inputs = [x]
        for value, shape in ((weight, w_shape), (bias, b_shape)):
            if shape is None:
                if value is not None:
                    return None
            else:
                inputs.append(value)
        for value, dtype in zip(inputs, dtypes):
            if type(value) is not np.ndarray or value.dtype != dtype or \
                    not value.flags.c_contiguous:
                return None
        if x.shape[1:] != x_shape or len(x.shape) != len(x_shape) + 1:
            return None
        if (w_shape is not None and weight.shape != w_shape) or \
                (b_shape is not None and bias.shape != b_shape):
            return None
        return inputs

    def _inputs(self, x, weight, bias) -> list:
        """The checked input arrays in argument order: x, [weight], [bias]."""
        accepted = self._accepted(x, weight, bias)
        if accepted is not None:
            return accepted
        g = self.generated
        if not hasattr(x, "shape") or len(x.shape) != len(g.input_shape) + 1:
            sample = ", ".join(map(str, g.input_shape))
            what, got = ((f"(N, {sample})", f"shape {tuple(x.shape)}") if hasattr(x, "shape")
                         else (f"a numpy.ndarray of shape (N, {sample})", type(x).__name__))
            raise SpecError(f"{g.name}: x must be {what} or a single sample ({sample}); "
                            f"got {got}")
        inputs = [self._array("x", x, (x.shape[0], *g.input_shape))]
        if "w" in g.arguments:
            inputs.append(self._array("weight", weight, tuple(g.layer.weight_shape),
                                      self._dtype("w")))
        elif weight is not None:
            raise SpecError(f"{g.name}: {type(g.layer).__name__} takes no weight")
        if "b" in g.arguments:
            if bias is None:
                raise SpecError(f"{g.name}: the layer has a bias; pass bias of shape "
                                f"({g.layer.out_channels},)")
            inputs.append(self._array("bias", bias, (g.layer.out_channels,),
                                      self._dtype("b")))
        elif bias is not None:
            raise SpecError(f"{g.name}: the layer has no bias (bias=False); got a bias")
        return inputs

    def __call__(self, x, weight=None, bias=None, out=None):
        return self._call(x, weight, bias, out, np.empty, self._run)

    def bind(self, x, weight=None, bias=None, out=None):
        """Check the arguments once; return a call of the kernel on them without arguments.

        ``bound = kernel.bind(x, weight, bias, out=y)``; then ``bound()`` runs the kernel on
        the arrays' current contents and returns the output (``out``, allocated once by
        ``bind`` when not given; ``(y, indices)`` with ``return_indices``).

        Contract: the arrays must stay the same arrays (never resized or reallocated: the
        bound call keeps them alive and holds their addresses); their contents may change
        between calls.  The C target's bound call does no checks at all.  Other targets
        (GPU, OpenCL) run the checked call here once (checking, allocating ``out``) and
        return a closure over the checked call with these arguments.
        """
        out = self(x, weight, bias, out=out)
        return lambda: self(x, weight, bias, out=out)

    def _call(self, x, weight, bias, out, empty, run):
        """Check the inputs, allocate the outputs with ``empty(shape, dtype)`` (or check
        ``out``), then ``run(inputs, outputs, batch)`` unless the batch is empty."""
        inputs, outputs, batch, result = self._prepare(x, weight, bias, out, empty)
        if batch:
            run(inputs, outputs, batch)
        return result

    def _prepare(self, x, weight, bias, out, empty) -> tuple:
        """(checked inputs, outputs, batch, what the call returns): every check a call makes,
        for a batch or a single sample (viewed as a batch of one)."""
        g = self.generated
        single = hasattr(x, "shape") and len(x.shape) == len(g.input_shape)
        if single:
            x = self._batched(x)
        inputs = self._inputs(x, weight, bias)
        batch = x.shape[0]
        shape = (batch, *g.output_shape)
        if out is not None:
            outputs = self._outputs(out, inputs, tuple(g.output_shape) if single else shape)
            if single:
                outputs = [a.reshape(shape) for a in outputs]  # contiguous: views
            return inputs, outputs, batch, out
        outputs = [empty(shape, g.dtype_of("y"))]
        if self._indices:
            outputs.append(empty(shape, np.int64))
        results = [a.reshape(shape[1:]) for a in outputs] if single else outputs
        return inputs, outputs, batch, tuple(results) if self._indices else results[0]

    def _batched(self, x):
        """A single sample ``(C, *spatial)`` as a batch of one: a view, never a copy."""
        x = self._array("x", x, tuple(self.generated.input_shape))  # named as a sample
        return x[np.newaxis] if isinstance(x, np.ndarray) else x.reshape((1, *x.shape))

    def _outputs(self, out, inputs: list, shape: tuple) -> list:
        """The caller's ``out`` checked like an input, writeable and overlapping nothing."""
        g = self.generated
        if self._indices:
            if type(out) not in (tuple, list) or len(out) != 2:
                raise SpecError(f"{g.name}: out must be a tuple (y, indices) (the layer has "
                                f"return_indices=True); got {type(out).__name__}")
            labelled = [("out[0]", out[0], None), ("out[1]", out[1], np.dtype(np.int64))]
        else:
            labelled = [("out", out, self._dtype("y"))]
        named = [("x", inputs[0])] + list(zip(("weight", "bias"), inputs[1:]))
        outputs = []
        for label, value, dtype in labelled:
            self._array(label, value, shape, dtype)
            if not getattr(value.flags, "writeable", True):
                raise SpecError(f"{g.name}: {label} is read-only; pass a writeable array")
            for other, array in named:
                if self._overlaps(value, array):
                    raise SpecError(f"{g.name}: {label} overlaps {other}; an output must "
                                    "share no memory with another argument")
            named.append((label, value))
            outputs.append(value)
        return outputs

    @staticmethod
    def _overlaps(a, b) -> bool:
        """Whether two checked (C-contiguous) arrays share memory: for contiguous arrays
        the bounds test is exact."""
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and \
            np.may_share_memory(a, b)

    @abc.abstractmethod
    def _run(self, inputs: list, outputs: list, batch: int) -> None:
        """Launch the kernel on checked ``inputs`` into allocated ``outputs``."""


def distinct(kernels) -> dict:
    """``{name: kernel}``, one per name; two different kernels under one name is an error
    (one would silently run as the other)."""
    unique: dict = {}
    for kernel in kernels:
        other = unique.setdefault(kernel.name, kernel)
        if other.source != kernel.source:
            raise SpecError(f"two different kernels are both named {kernel.name!r} "
                            f"({other.layer.describe()} on {other.input_shape} and "
                            f"{kernel.layer.describe()} on {kernel.input_shape}); "
                            "give each a distinct name")
    return unique
