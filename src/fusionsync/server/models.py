"""The API's request and response bodies, declared once: requests are validated against them and the
OpenAPI document (``/api/v1/openapi.json``) is generated from them.

Metadata bodies (catalogs, products, datasets, attributes) take any further fields, which are stored as
given; only the fields named here are checked. Response models describe answers for the document (the
fuzz test checks every answer against them).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

_SEGMENT = r"[^\x00-\x1f\x7f/\\]"
IDENTIFIER_PATTERN = rf"^(?:{_SEGMENT}*[^\x00-\x1f\x7f/\\.]{_SEGMENT}*|\.{{3,}})$"
IDENTIFIER_TEXT = (
    "A safe path segment: not empty, not '.' or '..', no '/', '\\\\', NUL or control characters, "
    "at most 255 bytes in UTF-8 (255 characters when ASCII)."
)
Identifier = Annotated[
    str, msgspec.Meta(min_length=1, max_length=255, pattern=IDENTIFIER_PATTERN, description=IDENTIFIER_TEXT)
]
DatasetIdentifier = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=255,
        pattern=IDENTIFIER_PATTERN,
        description=IDENTIFIER_TEXT + " 'changes' is reserved (the change listing).",
        extra_json_schema={"not": {"enum": ["changes"]}},
    ),
]
Printable = Annotated[str, msgspec.Meta(pattern=r"^[\x20-\x7e]*$")]
DigestHeader = Annotated[str, msgspec.Meta(pattern=r"^SHA-256=[A-Za-z0-9+/]{43}=$")]
NextTokenValue = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,18}$")]
ByteRange = Annotated[str, msgspec.Meta(pattern=r"^bytes=[0-9]*-[0-9]*$")]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
PartNumber = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
Names = list[Identifier] | Identifier | None
"""A list of identifiers, as the SDK sends them (one alone is a list of one)."""


class _Body(msgspec.Struct, omit_defaults=True, rename="camel"):
    """A request body: the fields named are checked, others are kept as given."""


# -- requests -------------------------------------------------------------------------------


class TokenRequest(msgspec.Struct):
    """OAuth2 client-credentials grant (a form)."""

    grant_type: str
    client_id: str
    client_secret: str
    aud: str | None = None


class Metadata(_Body):
    """Free metadata fields; `identifier`, when given, must equal the one in the URL."""

    identifier: Identifier | None = None


class ProductBody(Metadata):
    """A product's metadata; `dataset` links those datasets (which must exist) to the product."""

    dataset: Names = None


class DatasetBody(Metadata):
    """A dataset's metadata; `product` links the dataset to those products (which must exist)."""

    is_raw_data: bool = True
    product: Names = None


class ProductDatasets(msgspec.Struct):
    product: Identifier
    datasets: Annotated[list[Identifier], msgspec.Meta(min_length=1)]


class Completion(msgspec.Struct, omit_defaults=True):
    """The part answers in order (entries naming another partNumber are refused)."""

    parts: list[Any] | None = None


class AttributeBody(_Body):
    """One attribute (a column) of a dataset, or an attribute registered in a catalog."""

    identifier: Identifier
    index: int = 0
    data_type: str | None = None


class AttributeList(msgspec.Struct):
    attributes: list[AttributeBody]


class DatasetRef(msgspec.Struct):
    dataset: Identifier
    catalog: Identifier


class LineageBody(msgspec.Struct):
    """The datasets a dataset is made from."""

    source: Annotated[list[DatasetRef], msgspec.Meta(min_length=1)]


class AttributeRef(_Body):
    catalog: Identifier
    attribute: Identifier
    application_id: Any = None


class AttributeLineage(msgspec.Struct):
    source: AttributeRef
    targets: list[AttributeRef]


# -- answers --------------------------------------------------------------------------------


class Error(msgspec.Struct):
    message: str
    status: int | None = None
    error: str | None = None


class Token(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int


class Resource(msgspec.Struct):
    identifier: str


class ResourceList(msgspec.Struct):
    resources: list[Resource]


class Item(msgspec.Struct):
    """An item with its sub-collections (never empty: the official SDK needs at least one entry)."""

    identifier: str
    resources: Annotated[list[Resource], msgspec.Meta(min_length=1)]


class DatasetMetadata(msgspec.Struct, rename="camel"):
    identifier: str
    is_raw_data: bool


class Dataset(DatasetMetadata):
    resources: Annotated[list[Resource], msgspec.Meta(min_length=1)]


class DatasetList(msgspec.Struct):
    resources: list[DatasetMetadata]


class SeriesMember(msgspec.Struct, rename="camel"):
    identifier: str
    created_date: str
    from_date: str
    to_date: str


class SeriesList(msgspec.Struct):
    resources: list[SeriesMember]


class ProductDataset(msgspec.Struct):
    product: str
    dataset: str


class ProductDatasetList(msgspec.Struct):
    resources: list[ProductDataset]


class Unlinked(msgspec.Struct):
    product: str
    dataset: str
    deleted: bool


class Deleted(msgspec.Struct):
    identifier: str
    deleted: bool


class Distribution(msgspec.Struct):
    identifier: str
    size: NonNegative
    checksum: Annotated[str, msgspec.Meta(description="SHA-256=<base64 SHA-256 of the content>")]
    digest: Annotated[str, msgspec.Meta(description="SHA-256=<fsync digest>")]


class DistributionList(msgspec.Struct):
    resources: list[Distribution]


class File(msgspec.Struct):
    identifier: str
    title: str
    size: NonNegative


class FileList(msgspec.Struct):
    resources: list[File]


class Operation(msgspec.Struct, rename="camel"):
    operation_id: str


class Part(msgspec.Struct, rename="camel"):
    operation_id: str
    part_number: Annotated[int, msgspec.Meta(ge=1)]
    size: NonNegative
    digest: str


class HeldPart(msgspec.Struct, rename="camel"):
    part_number: Annotated[int, msgspec.Meta(ge=1)]
    size: NonNegative
    digest: str


class HeldParts(msgspec.Struct, rename="camel"):
    """The parts an open upload holds, received whole (a client resumes an interrupted upload from them)."""

    operation_id: str
    parts: list[HeldPart]


class Received(msgspec.Struct, rename="camel", omit_defaults=True):
    """A part received (with ``operationId`` and ``partNumber``), or the distribution a completion stored
    (with ``identifier`` and ``checksum``)."""

    size: NonNegative
    digest: str
    operation_id: str | None = None
    part_number: Annotated[int, msgspec.Meta(ge=1)] | None = None
    identifier: str | None = None
    checksum: str | None = None


class ChangeRow(msgspec.Struct):
    key: Annotated[str, msgspec.Meta(description="{dataset}/{series}/distribution.{format}")]
    values: Annotated[list[str], msgspec.Meta(min_length=9, max_length=9)]


class DatasetChanges(msgspec.Struct, rename="camel"):
    key: str
    last_modified: str
    distributions: list[ChangeRow]


class Changes(msgspec.Struct):
    datasets: list[DatasetChanges]


class Attribute(msgspec.Struct, rename="camel"):
    identifier: str
    index: int


class Attributes(msgspec.Struct):
    resources: list[Attribute]


class Lineage(msgspec.Struct):
    """A dataset's lineage: the relations it is part of, and the datasets they name."""

    relations: list[dict[str, DatasetRef]]
    datasets: list[dict[str, Any]]


class Counted(msgspec.Struct):
    """How many items a request changed."""

    count: NonNegative


class Event(msgspec.Struct, rename="camel"):
    """One change, as sent in a server-sent event's data."""

    id: str
    type: str
    timestamp: str
    meta_data: dict[str, Any] | None = None
