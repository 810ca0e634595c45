import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
# Two test workers on two cores start Ray heads side by side: a loaded machine can take longer than Ray's default
# 30 s for the GCS to bind its port (a CI run failed so); the same setting as experiments.common.start_ray.
os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")


@pytest.fixture(scope="session")
def test_seed() -> int:
    """The seed the seed-independent tests derive their random draws from: 0 unless INTENTLOOP_TEST_SEED says
    otherwise (tests/seeds.sh runs them for 0..19). The default run draws what it always drew."""
    return int(os.environ.get("INTENTLOOP_TEST_SEED", "0"))
