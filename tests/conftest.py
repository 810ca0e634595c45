import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def test_seed() -> int:
    """The seed the seed-independent tests derive their random draws from: 0 unless INTENTLOOP_TEST_SEED says
    otherwise (tests/seeds.sh runs them for 0..19). The default run draws what it always drew."""
    return int(os.environ.get("INTENTLOOP_TEST_SEED", "0"))
