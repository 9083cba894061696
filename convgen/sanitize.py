"""A kernel built with ``-fsanitize=address,undefined`` into a small C program and run.

The program allocates every buffer at exactly the size the kernel's header declares, so a
read or write past one is an AddressSanitizer finding (heap buffers; the kernel's own
arrays on the stack too), and UndefinedBehaviorSanitizer watches the index arithmetic.
:func:`findings` returns what they report ("" when nothing), for the tests and for
:mod:`convgen.mutate`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .codegen import GeneratedKernel
from .targets.c import C_TYPES

__all__ = ["FLAGS", "HARNESS", "findings", "harness"]

FLAGS = ("-std=c99", "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         "-fno-omit-frame-pointer")

HARNESS = """#include <stdio.h>
#include <stdlib.h>
#include "{name}.h"
{fillers}
int main(void)
{{
    const long batch = 2;
{allocations}
    {name}({arguments}, batch);
    double sum = 0;
    for (long i = 0; i < batch * {upper}_Y_SAMPLE; ++i) sum += (double)y[i];
    printf("%g\\n", sum);
{frees}
    return 0;
}}
"""


FILLER = """
static {ctype} *filled_{ctype}(long count)
{{
    {ctype} *p = malloc(sizeof *p * (size_t)count);
    for (long i = 0; p && i < count; ++i) p[i] = ({ctype})(i % 7) - ({ctype})3;
    return p;
}}
"""


def harness(kernel: GeneratedKernel) -> str:
    """The C program that calls ``kernel`` once on buffers of exactly its sizes (each of its
    array's type)."""
    upper = kernel.name.upper()
    types = {arg: C_TYPES[kernel.dtype_of(arg)] for arg in kernel.arguments
             if arg != "indices"}
    sizes = {"x": f"batch * {upper}_X_SAMPLE", "w": f"{upper}_W_SIZE", "b": f"{upper}_B_SIZE",
             "y": f"batch * {upper}_Y_SAMPLE", "indices": f"batch * {upper}_INDICES_SAMPLE",
             "scratch": f"{upper}_SCRATCH_SIZE"}
    lines = []
    for arg in kernel.arguments:
        if arg == "indices":
            lines.append("    int64_t *indices = malloc(sizeof(int64_t) * "
                         f"(size_t)({sizes[arg]}));")
        else:
            lines.append(f"    {types[arg]} *{arg} = filled_{types[arg]}({sizes[arg]});")
    frees = "\n".join(f"    free({arg});" for arg in kernel.arguments)
    fillers = "".join(FILLER.format(ctype=ctype) for ctype in dict.fromkeys(types.values()))
    return HARNESS.format(name=kernel.name, fillers=fillers, upper=upper,
                          allocations="\n".join(lines), arguments=", ".join(kernel.arguments),
                          frees=frees)


def findings(kernel: GeneratedKernel, folder: Path, program_text: str | None = None) -> str:
    """Build ``kernel`` with the sanitizers into :func:`harness` (or ``program_text``) in
    ``folder`` and run it: "" when it builds and runs clean, else what went wrong."""
    folder = Path(folder)
    (folder / f"{kernel.name}.c").write_text(kernel.source)
    (folder / f"{kernel.name}.h").write_text(kernel.header)
    (folder / "main.c").write_text(program_text or harness(kernel))
    program = folder / "main"
    command = ["gcc", *FLAGS, "-I", str(folder), str(folder / "main.c"),
               str(folder / f"{kernel.name}.c"), "-lm", "-o", str(program)]
    built = subprocess.run(command, capture_output=True, text=True)
    if built.returncode != 0:
        return f"does not build with the sanitizers: {built.stderr.strip()[:300]}"
    try:
        run = subprocess.run([str(program)], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "the sanitized program did not finish in 120 s"
    if run.returncode != 0 or run.stderr:
        lines = [line for line in run.stderr.splitlines() if "ERROR" in line or "runtime error"
                 in line]
        return "sanitizers: " + (lines[0] if lines else run.stderr.strip()[:300])
    return ""
