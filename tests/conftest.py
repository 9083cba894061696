"""Shared test set-up: hypothesis profiles, a private kernel cache, the bundled-kernel plan
and the quick tier.

``pytest -m quick`` runs the developer loop's tier (under 90 s on 2 cores with ``-n 2``):
everything but the modules and tests listed in :data:`SLOW` (bulk property runs that compile
hundreds of kernels, the CUDA text on the CPU, sanitizers, ONNX Runtime, the wheel build, and
whatever plans every bundled kernel), plus the few fast tests of those modules listed in
:data:`QUICK_ALSO`.  CI runs everything.

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


#: Modules whose tests stay out of the quick tier, and single tests (by name prefix) likewise.
SLOW = ("test_schedules.py", "test_cuda.py", "test_onnxruntime.py", "test_sanitizers.py",
        "test_bench.py", "test_packaging.py")
SLOW_TESTS = ("test_onnx_conformance_case_through_the_cuda_text_on_the_cpu",
              "test_a_sample_is_killed_or_justified_and_planted_mistakes_are_named",
              "test_onnx_conformance_case_through_the_fast_schedules",
              "test_generated_kernels_match_the_exact_oracle",
              "test_random_quantized_kernels_match_the_oracle_bit_for_bit",
              "test_random_quantized_kernels_of_the_fast_schedule_match_the_oracle",
              "test_the_fast_schedule_is_bit_for_bit_on_every_rung",
              "test_random_configs_match_onnx_runtime_bit_for_bit",
              "test_the_cuda_text_matches_the_oracle_on_the_cpu",
              "test_the_kernels_are_clean_under_the_sanitizers",
              "test_a_qlinearconv_model_file_round_trips_through_the_cli",
              "test_every_family_compiles_clean_under_strict_flags",
              "test_layer_statements_hold_for_random_layers",
              "test_command_lines_run",
              "test_the_whole_run_with_the_gpu_stubbed",
              "test_every_bundled_kernel_under_the_limit_is_proved",
              "test_every_proof_model_covers_what_the_operator_reads_and_writes",
              "test_every_cuda_entry_points_model_covers_the_operator",
              "test_a_hung_tests_stage_leaves_no_process_behind",
              "test_every_test_model_verifies_with_onnx_runtime",
              "test_generate_and_verify_a_model_from_the_cli",
              "test_the_network_c_builds_strictly_with_gcc_and_clang_and_from_cpp")
#: Fast tests of the slow modules that the quick tier keeps.
QUICK_ALSO = ("test_default_schedule_is_chosen_and_recorded",
              "test_an_explicit_non_default_schedule_gets_its_own_name",
              "test_winograd_is_refused_where_it_does_not_apply",
              "test_the_opencl_program_is_the_prelude_and_the_exact_cuda_text",
              "test_call_path_table_shows_bound_calls_of_one_thread_and_batch_one")


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.name.split("[")[0]
        slow = (item.path.name in SLOW and name not in QUICK_ALSO) or name in SLOW_TESTS \
            or "bundled_plan" in getattr(item, "fixturenames", ())
        if not slow:
            item.add_marker(pytest.mark.quick)
