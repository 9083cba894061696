"""Shared test set-up: hypothesis profiles and a private kernel cache.

``dev`` (the default) keeps the suite quick; ``ci`` (chosen when ``CI`` is set, as in
``.ci/run``) draws more examples.  ``HYPOTHESIS_PROFILE`` overrides either.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=40, deadline=None, print_blob=True)
settings.register_profile("ci", max_examples=150, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

#: How many configs one bulk property example builds into a single module (at least half
#: that many), and how many such examples run: in CI at least 60 * 30 = 1,800 configs.
BULK = int(os.environ.get("CONVGEN_TEST_BULK", "60" if os.environ.get("CI") else "20"))
BULK_EXAMPLES = int(os.environ.get("CONVGEN_TEST_BULK_EXAMPLES",
                                   "60" if os.environ.get("CI") else "8"))

#: Examples of the bulk property test of the CUDA text on the CPU (PoCL): in CI at least
#: 20 * 30 = 600 configs, each with every schedule.
CUDA_EXAMPLES = int(os.environ.get("CONVGEN_TEST_CUDA_EXAMPLES",
                                   "20" if os.environ.get("CI") else "5"))


@pytest.fixture(scope="session", autouse=True)
def _kernel_cache(tmp_path_factory):
    """Build kernels into a cache of this test session unless CONVGEN_CACHE_DIR is set."""
    if not os.environ.get("CONVGEN_CACHE_DIR"):
        os.environ["CONVGEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("kernel-cache"))
    yield


@pytest.fixture(scope="session")
def bundled_plan():
    """Every kernel of the bundled example layer files, planned once a session (worker):
    the files ``convgen generate`` writes into ``generated/`` (C, CUDA checked by nvcc,
    specs, reports).  Tests that need the bundled kernels share it instead of planning
    them again."""
    from convgen.config import bundled_examples
    from convgen.emit import kernel_files

    return kernel_files(sorted(bundled_examples().values()))
