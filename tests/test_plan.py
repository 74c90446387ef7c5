"""The planner: a pure function, checked exhaustively over random states."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fusionsync.catalog.layout import DistKey, local_relative_path
from fusionsync.sync.plan import LocalEntry, Op, RemoteEntry, plan

keys = st.builds(
    DistKey,
    st.just("common"),
    st.sampled_from(["A", "B"]),
    st.sampled_from(["20240101", "20240102", "20240103"]),
    st.sampled_from(["csv", "parquet"]),
)
digests = st.sampled_from(["d1", "d2", "d3"])


@st.composite
def states(draw: st.DrawFn) -> tuple[dict[str, LocalEntry], dict[DistKey, RemoteEntry], bool]:
    flatten = draw(st.booleans())
    remote = {k: RemoteEntry(k, draw(st.integers(0, 9)), draw(digests)) for k in draw(st.sets(keys, max_size=8))}
    local = {}
    for k in draw(st.sets(keys, max_size=8)):
        path = local_relative_path(k, flatten)
        digest = draw(digests)
        synced = draw(st.sampled_from([None, digest, "other"]))
        local[path] = LocalEntry(path, 3, digest, k, synced)
    return local, remote, flatten


@given(states(), st.booleans(), st.booleans())
def test_download_plan_reaches_the_remote_state_and_never_loses_a_local_change(
    state: tuple[dict[str, LocalEntry], dict[DistKey, RemoteEntry], bool], delete: bool, backup: bool
) -> None:
    local, remote, flatten = state
    result = plan("download", local, remote, flatten=flatten, delete=delete, backup=backup)
    by_path = {a.path: a for a in result.actions}
    assert len(by_path) == len(result.actions), "one action per path"
    for key, entry in remote.items():
        action = by_path[local_relative_path(key, flatten)]
        have = local.get(action.path)
        if have is None:
            assert action.op is Op.NEW
        elif have.digest == entry.digest:
            assert action.op is Op.EQUAL
        elif have.synced_digest == have.digest:
            assert action.op is Op.CHANGED and not action.backup
        else:  # a local change: taken only with a backup, otherwise kept
            assert action.op is (Op.CHANGED if backup else Op.CONFLICT)
            assert action.backup == backup
    for path, have in local.items():
        action = by_path.get(path)
        if action is None:
            assert not delete
            continue
        if action.op is Op.DELETE:
            assert delete and (have.synced_digest == have.digest or action.backup)
    assert all(a.op is not Op.DELETE for a in result.actions) or delete


@given(states(), st.booleans())
def test_upload_plan_sends_what_differs_and_deletes_only_when_mirroring(
    state: tuple[dict[str, LocalEntry], dict[DistKey, RemoteEntry], bool], delete: bool
) -> None:
    local, remote, _ = state
    result = plan("upload", local, remote, delete=delete)
    sent = {a.key for a in result.transfers}
    for entry in local.values():
        assert entry.key is not None
        there = remote.get(entry.key)
        assert (entry.key in sent) == (there is None or there.digest != entry.digest)
    deleted = {a.key for a in result.deletes}
    assert deleted == ({k for k in remote if k not in {e.key for e in local.values()}} if delete else set())


def test_two_local_files_for_one_distribution_are_a_conflict_not_a_race() -> None:
    key = DistKey("common", "A", "20240101", "csv")
    local = {
        "common/A/20240101/A__common__20240101.csv": LocalEntry(
            "common/A/20240101/A__common__20240101.csv", 1, "x", key
        ),
        "common/A/A__common__20240101.csv": LocalEntry("common/A/A__common__20240101.csv", 1, "y", key),
        "common/B/A__common__20240101.csv": LocalEntry("common/B/A__common__20240101.csv", 1, "z", key),
    }
    other = DistKey("common", "A", "20240102", "csv")
    local["common/A/20240102/A__common__20240102.csv"] = LocalEntry(
        "common/A/20240102/A__common__20240102.csv", 1, "w", other
    )
    result = plan("upload", local, {})
    assert [(a.op, a.path) for a in result.conflicts] == [(Op.CONFLICT, p) for p in sorted(local) if "0101" in p]
    assert all("rename all but one" in a.note for a in result.conflicts)
    assert [a.key for a in result.transfers] == [other]
