"""The planner: a pure function, checked exhaustively over random states."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fusionsync.catalog.layout import DistKey, local_relative_path
from fusionsync.catalog.listing import parse_time
from fusionsync.sync.plan import LocalEntry, Op, RemoteEntry, adopt, plan

keys = st.builds(
    DistKey,
    st.just("common"),
    st.sampled_from(["A", "B"]),
    st.sampled_from(["20240101", "20240102", "20240103"]),
    st.sampled_from(["csv", "parquet"]),
)
digests = st.sampled_from(["d1", "d2", "d3"])
T0 = 1_700_000_000.0
# The listing's times are to the second; local ones are finer: before, within and after that second.
modified = st.sampled_from(["", "2023-11-14T22:13:20Z", "not a time"])
mtimes = st.sampled_from([T0 - 3600, T0 - 0.5, T0, T0 + 0.5, T0 + 1, T0 + 3600])


@st.composite
def states(draw: st.DrawFn) -> tuple[dict[str, LocalEntry], dict[DistKey, RemoteEntry], bool]:
    flatten = draw(st.booleans())
    remote = {
        k: RemoteEntry(k, draw(st.integers(0, 9)), draw(digests), draw(modified))
        for k in draw(st.sets(keys, max_size=8))
    }
    local = {}
    for k in draw(st.sets(keys, max_size=8)):
        path = local_relative_path(k, flatten)
        digest = draw(digests)
        synced = draw(st.sampled_from([None, digest, "d1", "d2"]))
        local[path] = LocalEntry(path, 3, digest, k, synced, draw(mtimes))
    return local, remote, flatten


def server_newer(have: LocalEntry, there: RemoteEntry) -> bool:
    """The server's version was certainly modified after the local file (to the listing's second)."""
    when = parse_time(there.modified)
    return when is not None and have.mtime < when


def local_newer(have: LocalEntry, there: RemoteEntry) -> bool:
    when = parse_time(there.modified)
    return when is not None and have.mtime >= when + 1


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
        elif have.synced_digest is None and server_newer(have, entry):  # a stale copy, never synced here
            assert action.op is Op.CHANGED and action.backup == backup and "older" in action.note
        else:  # a local change (or one that cannot be told from one): taken only with a backup, otherwise kept
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


@given(states(), st.booleans(), st.dictionaries(keys, digests))
def test_upload_plan_sends_what_differs_and_never_overwrites_a_remote_change(
    state: tuple[dict[str, LocalEntry], dict[DistKey, RemoteEntry], bool],
    delete: bool,
    vanished: dict[DistKey, str],
) -> None:
    local, remote, _ = state
    result = plan("upload", local, remote, delete=delete, vanished=vanished)
    by_key = {a.key: a for a in result.actions}
    for entry in local.values():
        assert entry.key is not None
        there = remote.get(entry.key)
        action = by_key[entry.key]
        if there is None:
            assert action.op is Op.NEW
        elif there.digest == entry.digest:
            assert action.op is Op.EQUAL
        elif entry.synced_digest is None:  # never synced here: sent only when certainly newer
            assert action.op is (Op.CHANGED if local_newer(entry, there) else Op.CONFLICT), action
        elif there.digest != entry.synced_digest:  # someone else's version since the last sync
            assert action.op is Op.CONFLICT and "changed" in action.note
        else:
            assert action.op is Op.CHANGED
    local_keys = {e.key for e in local.values()}
    deleted = {a.key for a in result.deletes}
    spared = {k for k, there in remote.items() if vanished.get(k, there.digest) != there.digest}  # changed there
    expected = {k for k in remote if k not in local_keys and k not in spared}
    assert deleted == (expected if delete else set())


def test_adoption_says_why_in_one_sentence() -> None:
    key = DistKey("common", "A", "20240101", "csv")
    there = RemoteEntry(key, 1200, "remote", "2023-11-14T22:13:20Z")
    older = LocalEntry("p", 1000, "local", key, None, T0 - 60)
    assert adopt(older, there) == (
        False,
        "never synced here, and older (2023-11-14T22:12:20Z) than the server's version "
        "(2023-11-14T22:13:20Z; 1,000 bytes here, 1,200 on the server)",
    )
    assert adopt(older._replace(mtime=T0 + 60), there)[0] is True
    assert adopt(older._replace(mtime=T0 + 0.5), there)[0] is None  # the same second: cannot be told
    assert adopt(older, there._replace(modified=""))[0] is None


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
