"""The call path without Python overhead (issue 17): ``out=``, ``bind`` and single samples.

Inputs are small integers stored as float32, so every sum is exact and results are compared
bit for bit with :func:`convgen.reference.forward` or with the normal call.
"""

import gc

import numpy as np
import pytest

import convgen
from convgen.codegen import generate
from convgen.errors import SpecError
from convgen.reference import forward
from convgen.runtime import KernelCall, compile_kernels, compiler
from tests.helpers import cuda_kernels, needs_compiler

CONV = convgen.Conv2d(3, 4, 3)  # on (3, 8, 8): y is (N, 4, 6, 6)
POOL = convgen.MaxPool2d(2, return_indices=True)  # on (2, 8, 8): y is (N, 2, 4, 4)


@pytest.fixture(scope="module")
def kernels():
    needs_compiler(compiler())
    return compile_kernels([(CONV, (3, 8, 8), "call_conv"), (POOL, (2, 8, 8), "call_pool")],
                           flags=("-O1",))


@pytest.fixture(scope="module")
def conv(kernels):
    return kernels[0]


@pytest.fixture(scope="module")
def pool(kernels):
    return kernels[1]


def _ints(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).integers(-4, 5, shape).astype(dtype)


def _conv_args(batch=2, seed=0):
    return _ints((batch, 3, 8, 8), seed), _ints((4, 3, 3, 3), seed + 1), _ints(4, seed + 2)


def _exact(layer, *arrays):
    return forward(layer, *[a.astype(np.float64) for a in arrays])


# ----------------------------------------------------------------------------------- out=


def test_out_receives_the_exact_result_and_is_returned(conv):
    x, w, b = _conv_args()
    y = np.full((2, 4, 6, 6), np.nan, np.float32)
    assert conv(x, w, b, out=y) is y
    assert np.array_equal(y, _exact(CONV, x, w, b)) and np.array_equal(y, conv(x, w, b))


def test_out_may_share_a_buffer_with_an_input_without_overlapping_it(conv):
    x, w, b = _conv_args()
    buffer = np.zeros(x.size + 2 * 4 * 6 * 6, np.float32)
    inside, y = buffer[:x.size].reshape(x.shape), buffer[x.size:].reshape(2, 4, 6, 6)
    inside[...] = x
    assert conv(inside, w, b, out=y) is y
    assert np.array_equal(y, _exact(CONV, x, w, b))


def _overlapping(x, w, b):
    """``out`` starting inside x's buffer."""
    buffer = np.zeros(x.size + 2 * 4 * 6 * 6, np.float32)
    inside = buffer[:x.size].reshape(x.shape)
    inside[...] = x
    return (inside, w, b), buffer[x.size - 1:-1].reshape(2, 4, 6, 6)


def _read_only():
    y = np.zeros((2, 4, 6, 6), np.float32)
    y.flags.writeable = False
    return y


class Sub(np.ndarray):
    pass


@pytest.mark.parametrize("make, message", [
    (lambda x, w, b: ((x, w, b), np.zeros((2, 4, 6, 6))),
     "out has dtype float64; the kernel was generated for float32"),
    (lambda x, w, b: ((x, w, b), np.zeros((2, 4, 6, 5), np.float32)),
     r"out has shape \(2, 4, 6, 5\); expected \(2, 4, 6, 6\)"),
    (lambda x, w, b: ((x, w, b), np.zeros((1, 4, 6, 6), np.float32)),
     r"out has shape \(1, 4, 6, 6\); expected \(2, 4, 6, 6\)"),
    (lambda x, w, b: ((x, w, b), np.zeros((2, 4, 6, 6), np.float32, order="F")),
     "out is not C-contiguous"),
    (lambda x, w, b: ((x, w, b), np.zeros((2, 4, 6, 12), np.float32)[..., ::2]),
     "out is not C-contiguous"),
    (lambda x, w, b: ((x, w, b), _read_only()), "out is read-only"),
    (lambda x, w, b: ((x, w, b), np.zeros((2, 4, 6, 6), np.float32).view(Sub)),
     r"out must be a numpy.ndarray \(not a subclass"),
    (lambda x, w, b: ((x, w, b), [[0.0]]), "out must be a numpy.ndarray, got list"),
    (lambda x, w, b: ((x, w, b), x), r"out has shape \(2, 3, 8, 8\); expected"),
    (_overlapping, "out overlaps x"),
])
def test_a_wrong_out_is_refused_naming_it(conv, make, message):
    arguments, out = make(*_conv_args())
    with pytest.raises(SpecError, match=message):
        conv(*arguments, out=out)
    with pytest.raises(SpecError, match=message):
        conv.bind(*arguments, out=out)


def test_out_overlapping_the_weight_or_bias_is_refused(conv):
    x, _, _ = _conv_args()
    buffer = _ints(2 * 4 * 6 * 6 + 4 * 27)
    w, y = buffer[:108].reshape(4, 3, 3, 3), buffer[100:100 + 288].reshape(2, 4, 6, 6)
    with pytest.raises(SpecError, match="out overlaps weight"):
        conv(x, w, np.zeros(4, np.float32), out=y)
    b = buffer[200:204]
    with pytest.raises(SpecError, match="out overlaps bias"):
        conv(x, _ints((4, 3, 3, 3)), b, out=y)


def test_out_with_an_empty_batch_is_returned_untouched(conv):
    x, w, b = _conv_args(batch=0)
    y = np.empty((0, 4, 6, 6), np.float32)
    assert conv(x, w, b, out=y) is y
    with pytest.raises(SpecError, match=r"out has shape \(1, 4, 6, 6\); expected \(0, 4, 6, 6\)"):
        conv(x, w, b, out=np.empty((1, 4, 6, 6), np.float32))


def test_max_pool_indices_go_into_out_too(pool):
    x = _ints((2, 2, 8, 8))
    y, indices = np.full((2, 2, 4, 4), np.nan, np.float32), np.full((2, 2, 4, 4), -1)
    out = (y, indices)
    assert pool(x, out=out) is out
    expected_y, expected_indices = _exact(POOL, x)
    assert np.array_equal(y, expected_y) and np.array_equal(indices, expected_indices)
    y2, indices2 = pool(x)
    assert np.array_equal(y, y2) and np.array_equal(indices, indices2)


def _aliased_pair():
    """y and indices over one buffer, indices rereading the second half of y's bytes."""
    buffer = np.zeros(200, np.float32)
    return (buffer[:64].reshape(2, 2, 4, 4),
            buffer[32:160].view(np.int64).reshape(2, 2, 4, 4))


@pytest.mark.parametrize("out, message", [
    (lambda: np.zeros((2, 2, 4, 4), np.float32),
     r"out must be a tuple \(y, indices\) \(the layer has return_indices=True\); got ndarray"),
    (lambda: (np.zeros((2, 2, 4, 4), np.float32),),
     r"out must be a tuple \(y, indices\) .*; got tuple"),
    (lambda: (np.zeros((2, 2, 4, 4), np.float32), np.zeros((2, 2, 4, 4), np.float32)),
     "out.1. has dtype float32; expected int64"),
    (lambda: (np.zeros((2, 2, 4, 4), np.int64), np.zeros((2, 2, 4, 4), np.int64)),
     "out.0. has dtype int64; the kernel was generated for float32"),
    (lambda: (np.zeros((2, 2, 4, 4), np.float32), np.zeros((2, 2, 4, 3), np.int64)),
     r"out.1. has shape \(2, 2, 4, 3\); expected \(2, 2, 4, 4\)"),
    (_aliased_pair, "out.1. overlaps out.0."),
])
def test_a_wrong_indices_out_is_refused_naming_it(pool, out, message):
    with pytest.raises(SpecError, match=message):
        pool(_ints((2, 2, 8, 8)), out=out())


def test_the_aliased_pair_really_overlaps():
    """The overlap case above is one: indices reread y's bytes."""
    y, indices = _aliased_pair()
    assert np.shares_memory(y, indices)


# ----------------------------------------------------------------------------------- bind


def test_bind_equals_the_normal_call_and_sees_new_contents(conv):
    x, w, b = _conv_args()
    bound = conv.bind(x, w, b)
    first = bound()
    assert first.shape == (2, 4, 6, 6) and np.array_equal(first, conv(x, w, b))
    x[...], w[...] = _ints(x.shape, 7), _ints(w.shape, 8)
    assert bound() is first  # the same output array every call
    assert np.array_equal(first, _exact(CONV, x, w, b))


def test_bind_into_a_given_out_keeps_its_arrays_alive(conv):
    x, w, b = _conv_args()
    expected = _exact(CONV, x, w, b)
    y = np.zeros((2, 4, 6, 6), np.float32)
    bound = conv.bind(x.copy(), w.copy(), b.copy(), out=y)
    gc.collect()  # the copies live on only through the bound call
    assert bound() is y and np.array_equal(y, expected)


def test_bind_returns_indices_and_empty_batches(conv, pool):
    x = _ints((2, 2, 8, 8))
    y, indices = pool.bind(x)()
    expected_y, expected_indices = _exact(POOL, x)
    assert np.array_equal(y, expected_y) and np.array_equal(indices, expected_indices)
    out = (np.empty((2, 2, 4, 4), np.float32), np.empty((2, 2, 4, 4), np.int64))
    assert pool.bind(x, out=out)() is out and np.array_equal(out[1], expected_indices)
    assert conv.bind(*_conv_args(batch=0))().shape == (0, 4, 6, 6)


def test_bind_checks_the_inputs_once(conv):
    x, w, b = _conv_args()
    with pytest.raises(SpecError, match="x has dtype float64"):
        conv.bind(x.astype(np.float64), w, b)
    with pytest.raises(SpecError, match="the layer has a bias"):
        conv.bind(x, w)


def test_the_base_class_bind_is_the_checked_call_with_fixed_arguments(conv):
    """What targets without their own bind (GPU, OpenCL) do."""
    x, w, b = _conv_args()
    bound = KernelCall.bind(conv, x, w, b)
    result = bound()
    x[...] = _ints(x.shape, 9)
    assert bound() is result and np.array_equal(result, _exact(CONV, x, w, b))


class _Oracle(KernelCall):
    """A target whose "kernel" is the reference: exercises the base class's checked path
    (the one the GPU and OpenCL targets run) without a compiler."""

    target = "oracle"

    def _run(self, inputs, outputs, batch):
        result = forward(self.generated.layer, *inputs)
        for output, value in zip(outputs, result if self._indices else (result,)):
            output[...] = value


def test_the_base_class_call_path_without_a_c_kernel():
    oracle = _Oracle(generate(POOL, (2, 8, 8), name="call_oracle"))
    x = _ints((2, 2, 8, 8))
    expected_y, expected_indices = _exact(POOL, x)
    out = (np.zeros((2, 2, 4, 4), np.float32), np.zeros((2, 2, 4, 4), np.int64))
    assert oracle(x, out=out) is out and np.array_equal(out[1], expected_indices)
    y, indices = oracle.bind(x[1])()
    assert np.array_equal(y, expected_y[1]) and np.array_equal(indices, expected_indices[1])
    with pytest.raises(SpecError, match="out.0. overlaps x"):
        oracle(x, out=(x.reshape(-1)[:64].reshape(2, 2, 4, 4), out[1]))


# ---------------------------------------------------------------------- single samples


def test_a_single_sample_runs_as_a_batch_of_one(conv, pool):
    x, w, b = _conv_args()
    y = conv(x[1], w, b)
    assert y.shape == (4, 6, 6) and np.array_equal(y, _exact(CONV, x, w, b)[1])
    single_y, single_indices = pool(x[0, :2])
    expected_y, expected_indices = _exact(POOL, x[:1, :2])
    assert single_y.shape == single_indices.shape == (2, 4, 4)
    assert np.array_equal(single_y, expected_y[0])
    assert np.array_equal(single_indices, expected_indices[0])


def test_a_single_sample_with_out_and_bind(conv):
    x, w, b = _conv_args()
    y = np.zeros((4, 6, 6), np.float32)
    assert conv(x[0], w, b, out=y) is y and np.array_equal(y, _exact(CONV, x, w, b)[0])
    with pytest.raises(SpecError, match=r"out has shape \(1, 4, 6, 6\); expected \(4, 6, 6\)"):
        conv(x[0], w, b, out=np.zeros((1, 4, 6, 6), np.float32))
    sample = x[1].copy()
    bound = conv.bind(sample, w, b)
    assert bound().shape == (4, 6, 6)
    sample[...] = x[0]
    assert np.array_equal(bound(), y)


@pytest.mark.parametrize("x, message", [
    (np.zeros((8, 8), np.float32),
     r"x must be \(N, 3, 8, 8\) or a single sample \(3, 8, 8\); got shape \(8, 8\)"),
    (np.zeros((1, 1, 3, 8, 8), np.float32),
     r"x must be \(N, 3, 8, 8\) or a single sample \(3, 8, 8\); got shape \(1, 1, 3, 8, 8\)"),
    ([[0.0]], r"x must be a numpy.ndarray of shape \(N, 3, 8, 8\) or a single sample "
              r"\(3, 8, 8\); got list"),
    (np.zeros((3, 8, 9), np.float32), r"x has shape \(3, 8, 9\); expected \(3, 8, 8\)"),
    (np.zeros((3, 8, 8)), "x has dtype float64"),
    (np.zeros((3, 8, 16), np.float32)[..., ::2], "x is not C-contiguous"),
    (np.zeros((3, 8, 8), np.float32).view(Sub), r"x must be a numpy.ndarray \(not a subclass"),
])
def test_a_wrong_sample_is_refused_naming_what_is_allowed(conv, x, message):
    _, w, b = _conv_args()
    with pytest.raises(SpecError, match=message):
        conv(x, w, b)


def test_the_cuda_text_on_the_cpu_takes_out_bind_and_samples_through_the_base_class():
    """The OpenCL target has no call path of its own: the base class gives it all three
    (skipped where PoCL is missing; the rest of this module needs only a C compiler)."""
    conv, _, pool = cuda_kernels("cuda-cpu", [(CONV, (3, 8, 8)), (POOL, (2, 8, 8))],
                                 "float32")
    x, w, b = _conv_args()
    y = np.zeros((2, 4, 6, 6), np.float32)
    assert conv(x, w, b, out=y) is y and np.array_equal(y, _exact(CONV, x, w, b))
    assert np.array_equal(conv.bind(x[1], w, b)(), y[1])
    with pytest.raises(SpecError, match="out overlaps x"):
        conv(x, w, b, out=x.reshape(-1)[:288].reshape(2, 4, 6, 6))
    x = _ints((2, 2, 8, 8))
    out = (np.zeros((2, 2, 4, 4), np.float32), np.zeros((2, 2, 4, 4), np.int64))
    assert pool(x, out=out) is out
    assert all(np.array_equal(a, e) for a, e in zip(out, _exact(POOL, x)))
