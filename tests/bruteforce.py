"""Independent oracles for output sizes: counting window positions from the definition.

Nothing here calls convgen's formulas; these loops are what the formulas must agree with.
"""


def count_windows(n, kernel, stride, dilation, lo, hi, ceil_mode=False):
    """Windows at padded positions 0, stride, 2*stride, ...

    Floor mode keeps a window when every tap lies in the padded input.  Ceil mode keeps
    windows while the previous one left part of the padded input uncovered, except a window
    that would start in the right padding.
    """
    padded = n + lo + hi
    extent = dilation * (kernel - 1) + 1
    count, start = 0, 0
    while True:
        if ceil_mode:
            covered_end = start - stride + extent  # end of the previous window
            if count and covered_end >= padded:
                return count
            if start >= lo + n:
                return count
        elif start + extent > padded:
            return count
        count += 1
        start += stride


def transpose_size(n, kernel, stride, dilation, lo, hi, output_padding):
    """Size of a transposed convolution's output, from the scatter that defines it.

    Input ``i`` adds into positions ``i*stride + j*dilation``; the full result spans up to the
    last position touched, grows by ``output_padding`` at the end, and loses ``lo`` positions
    at the start and ``hi`` at the end.
    """
    touched = {i * stride + j * dilation for i in range(n) for j in range(kernel)}
    return max(touched) + 1 + output_padding - lo - hi


def smallest_conv_input(n, kernel, stride, dilation, lo, hi):
    """The smallest input size whose convolution has output size ``n``, or None."""
    size = 1
    while count_windows(size, kernel, stride, dilation, lo, hi) < n:
        size += 1
    return size if count_windows(size, kernel, stride, dilation, lo, hi) == n else None
