"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """A local Ray for the whole test session: started once (a few seconds, ~1 GB), shut down at the end."""
    import ray

    from instruments.ray_runtime import ensure_ray

    started = ensure_ray(None, tmp_path_factory.mktemp("ray"))
    yield
    if started:
        ray.shutdown()
