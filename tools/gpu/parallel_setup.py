"""``python parallel_setup.py JOBS ARGS...``: run ``setup.py ARGS`` (in the current folder)
with each extension's source files compiled by JOBS parallel compiler processes.

setuptools' ``build_ext -j`` builds several extensions at once, but compiles the files of
one extension one after another; PyCUDA's work is nearly all one extension (``_driver``,
about 40 C++ files), so ``-j`` alone leaves the cores idle.  This wraps distutils'
``CCompiler.compile`` (the same steps, in a thread pool: each thread waits on its own
compiler process) and then runs ``setup.py`` unchanged.
"""

from __future__ import annotations

import os
import runpy
import sys
from concurrent.futures import ThreadPoolExecutor
from distutils.ccompiler import CCompiler

import setuptools  # noqa: F401  (installs its distutils, whose compiler class is patched)


def _parallel(jobs: int):
    def compile(self, sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                extra_preargs=None, extra_postargs=None, depends=None):
        macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs)
        cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)

        def one(obj):
            source, extension = build[obj]
            self._compile(obj, source, extension, cc_args, extra_postargs, pp_opts)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, [obj for obj in objects if obj in build]))
        return objects

    return compile


if __name__ == "__main__":
    CCompiler.compile = _parallel(max(1, int(sys.argv[1])))
    sys.argv = ["setup.py", *sys.argv[2:]]
    sys.path[0] = os.getcwd()  # as `python setup.py` has it: setup.py imports its neighbours
    runpy.run_path("setup.py", run_name="__main__")
