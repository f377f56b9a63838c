"""The cluster URL form, as both Redis clients take it apart."""

from __future__ import annotations

import pytest

from webhookd.redis_urls import split_cluster_url


def test_a_cluster_url_names_its_first_node_and_every_node() -> None:
    assert split_cluster_url("rediss+cluster://u:p@10.0.0.1:7000,h2,h3:7002/0") == (
        "rediss://u:p@10.0.0.1:7000/0",
        [("10.0.0.1", 7000), ("h2", 6379), ("h3", 7002)],
    )


@pytest.mark.parametrize("url", ["redis://h:1/0", "unix:///tmp/r.sock", "memory://"])
def test_other_urls_are_not_cluster_urls(url: str) -> None:
    assert split_cluster_url(url) is None
