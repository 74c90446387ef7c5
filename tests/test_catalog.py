"""Pure domain: digests, identifiers, local naming and layout."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fusionsync.catalog.digest import PART_SIZE, FusionHasher, fsync_digest_of, parse_digest_header
from fusionsync.catalog.layout import (
    NAME_MAX,
    RECOGNIZED_FORMATS,
    DistKey,
    file_name,
    is_partial,
    local_relative_path,
    parse_file_name,
    partial_names,
    temp_name,
)
from fusionsync.catalog.names import InvalidIdentifier, check_identifier, identifier_problem


def reference_fsync_digest(data: bytes, part: int = PART_SIZE) -> str:
    """The SDK's algorithm, written the plain way."""
    chunks = [data[i : i + part] for i in range(0, len(data), part)] or [b""]
    if len(chunks) == 1:
        return base64.b64encode(hashlib.sha256(chunks[0]).digest()).decode()
    outer = hashlib.sha256(b"".join(hashlib.sha256(c).digest() for c in chunks))
    return base64.b64encode(outer.digest()).decode()


def test_known_digest_of_hello_world() -> None:
    assert fsync_digest_of([b"hello world"]) == "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="


@given(st.binary(max_size=300), st.lists(st.integers(1, 50), max_size=20), st.integers(1, 64))
def test_streaming_digest_matches_reference_for_any_chunking(data: bytes, cuts: list[int], part: int) -> None:
    hasher = FusionHasher(part_size=part)
    pos = 0
    for cut in cuts:
        hasher.update(data[pos : pos + cut])
        pos += cut
    hasher.update(data[pos:])
    assert hasher.fsync_digest() == reference_fsync_digest(data, part)
    assert hasher.checksum() == base64.b64encode(hashlib.sha256(data).digest()).decode()
    parts = [data[i : i + part] for i in range(0, len(data), part)] or [b""]
    assert hasher.part_digests_b64() == [base64.b64encode(hashlib.sha256(p).digest()).decode() for p in parts]


def test_digest_at_part_boundaries() -> None:
    for size in (PART_SIZE - 1, PART_SIZE, PART_SIZE + 1, 2 * PART_SIZE):
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        assert fsync_digest_of([data]) == reference_fsync_digest(data)


def test_digest_header_parsing() -> None:
    assert parse_digest_header("SHA-256=abc=") == "abc="
    assert parse_digest_header("md5=x, sha-256=abc") == "abc"
    assert parse_digest_header("md5=x") is None
    assert parse_digest_header(None) is None


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\\b", "a\x00b", "tab\tx", "x" * 256, "é" * 128])
def test_unsafe_identifiers_are_rejected(bad: str) -> None:
    assert identifier_problem(bad) is not None
    with pytest.raises(InvalidIdentifier):
        check_identifier(bad)


@pytest.mark.parametrize("good", ["common", "20240101", "MY_DATASET", "a.b", "x" * 255, "données"])
def test_safe_identifiers_are_accepted(good: str) -> None:
    assert check_identifier(good) == good


def test_layout_follows_the_sdk_naming() -> None:
    key = DistKey("common", "FX_RATES", "20241119", "csv")
    assert file_name(key) == "FX_RATES__common__20241119.csv"
    assert local_relative_path(key) == "common/FX_RATES/20241119/FX_RATES__common__20241119.csv"
    assert local_relative_path(key, flatten=True) == "common/FX_RATES/FX_RATES__common__20241119.csv"
    assert key.remote_path == "common/datasets/FX_RATES/datasetseries/20241119/distributions/csv"


ident = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=20)
ident = ident.filter(lambda s: "__" not in s)


@given(ident, ident, ident, st.sampled_from(["csv", "parquet", "json", "zip"]))
def test_file_name_round_trips(catalog: str, dataset: str, series: str, fmt: str) -> None:
    key = DistKey(catalog, dataset, series, fmt)
    parsed = parse_file_name(file_name(key))
    assert parsed is not None
    assert parsed.key == key


@pytest.mark.parametrize(
    "name", ["README.md", "a__b.csv", "a__b__c__d.csv", "__b__c.csv", "a__b__c", ".a__b__c.csv", "a____c.csv"]
)
def test_non_conforming_names_are_skipped(name: str) -> None:
    assert parse_file_name(name) is None


def test_raw_datasets_map_unknown_extensions_to_raw() -> None:
    parsed = parse_file_name("D__c__20240101.bin", is_raw=True)
    assert parsed is not None and parsed.key.format == "raw"
    parsed = parse_file_name("D__c__20240101.csv", is_raw=True)
    assert parsed is not None and parsed.key.format == "csv"


piece = st.one_of(
    st.sampled_from(["", ".", "..", "a", "é", "x" * 120, "a\x01", "a\\b", "\x7f", "ok-1"]), st.text(max_size=12)
)


@given(piece, piece, piece, piece, st.booleans())
@example("a", "b", "c", "..", False)
@example("a", "b", "c", ".", False)
@example("a", "b", "c\x00", "csv", False)
@example("é", "b", "c", "csv", False)
@example("a", "b", "x" * 300, "csv", False)
def test_a_name_conforms_exactly_when_each_part_is_a_safe_identifier(
    dataset: str, catalog: str, series: str, extension: str, is_raw: bool
) -> None:
    name = f"{dataset}__{catalog}__{series}.{extension}"
    stem, _, ext = name.partition(".")
    parts = stem.split("__")
    fmt = ext.lower()
    if is_raw and fmt not in RECOGNIZED_FORMATS:
        fmt = "raw"
    expected = (
        not name.startswith(".")
        and bool(ext)
        and len(parts) == 3
        and all(identifier_problem(v) is None for v in (*parts, fmt))
    )
    assert (parse_file_name(name, is_raw) is not None) == expected


@given(st.text(min_size=1, max_size=300).filter(lambda n: "/" not in n and "\0" not in n))
@example("D" * 255)
@example("\u00e9" * 127 + "x")
def test_a_download_partial_and_its_record_fit_any_file_name(name: str) -> None:
    names = (*partial_names(name), temp_name(name, "partial.new"))
    for made in names:
        assert len(made.encode("utf-8", errors="surrogateescape")) <= NAME_MAX and made.startswith(".")
    assert [is_partial(n) for n in names] == [True, True, False], "the pending record is a stale temporary"
    assert parse_file_name(names[0]) is None and parse_file_name(names[1]) is None
