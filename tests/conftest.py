"""Shared test set-up: hypothesis profiles.

``dev`` (the default) keeps the suite quick; ``ci`` (chosen when ``CI`` is set, as in
``.ci/run``) draws more examples.  ``HYPOTHESIS_PROFILE`` overrides either.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=40, deadline=None, print_blob=True)
settings.register_profile("ci", max_examples=150, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
