"""Which distribution a local file stands for: the SDK's naming, read back exactly.

The SDK writes ``{catalog}/{dataset}/{series}/{file}`` with the identifiers as they are in the
folders and *cleaned* in the file name (what is not a letter, digit, ``_`` or ``-`` becomes ``_``:
series ``2024 0105`` is ``D__cat__2024_0105.csv`` in the folder ``2024 0105``). Reading a mirror
back, the folders give the identifiers when the file name is their cleaned form; otherwise the file
name decides (as the SDK's upload does), and a flattened file whose series is the cleaned form of
exactly one series on the server stands for that series.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fusionsync.catalog.layout import RECOGNIZED_FORMATS, DistKey, clean, naming_problem, parse_file_name
from fusionsync.catalog.names import identifier_problem
from fusionsync.sync.plan import LocalEntry


class LocalNames:
    """Maps paths under the local root (``catalog/dataset/…/name``) to the distributions of one sync."""

    def __init__(self, catalog: str, datasets: Iterable[str], dataset_format: str | None = None) -> None:
        self.catalog = catalog
        self.datasets = frozenset(datasets)
        self.dataset_format = dataset_format
        self.raw: dict[str, bool] = {}
        """isRawData of the datasets asked about (those with files of unknown extensions)."""

    def key_of(self, rel: str) -> DistKey | str | None:
        """The distribution of the file at ``rel``; a sentence when the file is skipped; None when it
        is left out on purpose (another format than the one asked for)."""
        key = self.resolve(rel)
        if isinstance(key, DistKey) and self.dataset_format and key.format != self.dataset_format:
            return None
        return key

    def resolve(self, rel: str) -> DistKey | str:
        """:meth:`key_of` without the format filter."""
        parts = rel.split("/")
        name = parts[-1]
        parsed = parse_file_name(name)
        if parsed is not None:  # the common case: the name says what the folders say
            named = parsed.key
            if (
                named.catalog == self.catalog
                and named.dataset in self.datasets
                and (len(parts) != 4 or named.series == parts[2])
            ):
                return named if named.format in RECOGNIZED_FORMATS else self._with_format(named, parsed.extension)
        folder_dataset = parts[1]
        stem, dot, extension = name.partition(".")
        if len(parts) == 4 and dot and extension and not name.startswith("."):
            series = parts[2]  # a series folder whose cleaned name is the file's (``2024 0105``)
            if stem == clean(f"{folder_dataset}__{self.catalog}__{series}") and identifier_problem(series) is None:
                return self._with_format(DistKey(self.catalog, folder_dataset, series, ""), extension)
        if parsed is None:
            return naming_problem(name) or f"file name {name!r} is not a distribution's, so it is skipped"
        named = parsed.key
        if named.catalog not in (self.catalog, clean(self.catalog)):
            return f"named for catalog {named.catalog!r}, not {self.catalog!r}, so it is skipped"
        if named.dataset in self.datasets:
            dataset = named.dataset
        elif named.dataset == clean(folder_dataset) and folder_dataset in self.datasets:
            dataset = folder_dataset
        else:
            return f"named for dataset {named.dataset!r}, which this sync does not include, so it is skipped"
        return self._with_format(DistKey(self.catalog, dataset, named.series, ""), parsed.extension)

    def _with_format(self, key: DistKey, extension: str) -> DistKey:
        fmt = extension.lower()
        if fmt not in RECOGNIZED_FORMATS and self.raw.get(key.dataset, False):
            fmt = "raw"
        return key._replace(format=fmt)

    def datasets_with_unknown_formats(self, paths: Iterable[str]) -> set[str]:
        """The datasets whose ``isRawData`` decides the format of some of ``paths`` (unknown extensions)."""
        found = set()
        for rel in paths:
            if rel.rsplit("/", 1)[-1].partition(".")[2].lower() not in RECOGNIZED_FORMATS:
                key = self.resolve(rel)
                if isinstance(key, DistKey):
                    found.add(key.dataset)
        return found


def match_remote_series(local: dict[str, LocalEntry], remote: Mapping[DistKey, object]) -> None:
    """A local file whose series is not on the server but is the cleaned form of exactly one series
    there (a flattened mirror of series ``2024 0105``) stands for that series, so an upload updates
    it instead of creating series ``2024_0105``."""
    by_clean: dict[DistKey, list[DistKey]] = {}
    for key in remote:
        cleaned = clean(key.series)
        if cleaned != key.series:
            by_clean.setdefault(key._replace(series=cleaned), []).append(key)
    if not by_clean:
        return
    for path, entry in local.items():
        if entry.key is None or entry.key in remote:
            continue
        candidates = by_clean.get(entry.key)
        if candidates is not None and len(candidates) == 1:
            local[path] = entry._replace(key=candidates[0])
