"""Local service set-up that needs no network."""

from __future__ import annotations

from devenv.services import new_cluster_id


def test_cluster_ids_never_look_like_an_option() -> None:
    """One random id in 64 starts with "-", which made `kafka-storage format
    -t <id>` fail ("expected one argument") about once in 64 fresh starts."""
    ids = [new_cluster_id() for _ in range(2000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids)
    assert len(set(ids)) == len(ids)
