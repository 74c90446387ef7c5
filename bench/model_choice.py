"""Cost per request of declaring the API's models with msgspec or pydantic: decode + validate a JSON body,
then encode an answer (a dataset's metadata: the busiest metadata write), in µs.

Run: ``.venv/bin/python -m bench.model_choice`` (pydantic is not a dependency: ``pip install pydantic`` first).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import msgspec

BODY = json.dumps(
    {
        "identifier": "FX_RATES",
        "title": "FX rates",
        "description": "Daily FX fixings",
        "category": ["FX"],
        "region": ["Global"],
        "isRawData": False,
        "frequency": "Daily",
        "product": ["FX"],
        "tag": ["fx", "rates"],
        "createdDate": "2024-01-01",
        "modifiedDate": "2024-01-01",
    }
).encode()


class MsgspecDataset(msgspec.Struct, omit_defaults=True):
    identifier: str | None = None
    title: str | None = None
    description: str | None = None
    isRawData: bool | None = None
    product: list[str] | None = None
    extra: dict[str, Any] = {}


def timed(label: str, fn: Callable[[], object], n: int = 100_000) -> float:
    for _ in range(1000):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    per = (time.perf_counter() - start) / n * 1e6
    print(f"{label:42} {per:7.2f} µs")
    return per


def main() -> None:
    decoder = msgspec.json.Decoder(MsgspecDataset)
    encoder = msgspec.json.Encoder()

    def with_msgspec() -> bytes:
        raw = msgspec.json.decode(BODY)  # free fields are kept: the typed ones are checked
        decoder.decode(BODY)
        return encoder.encode(raw)

    def with_stdlib() -> bytes:
        return json.dumps(json.loads(BODY)).encode()

    timed("stdlib json (no validation)", with_stdlib)
    timed("msgspec: decode + validate + encode", with_msgspec)
    try:
        import pydantic
    except ImportError:
        print("pydantic not installed: pip install pydantic to compare")
        return

    class PydanticDataset(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        identifier: str | None = None
        title: str | None = None
        description: str | None = None
        isRawData: bool | None = None
        product: list[str] | None = None

    def with_pydantic() -> bytes:
        model = PydanticDataset.model_validate_json(BODY)
        return model.model_dump_json(exclude_none=True).encode()

    timed("pydantic: decode + validate + encode", with_pydantic)
    start = time.perf_counter()
    import importlib
    import sys

    for name in [m for m in sys.modules if m.startswith("pydantic")]:
        del sys.modules[name]
    importlib.import_module("pydantic")
    print(f"{'pydantic import (warm disk)':42} {(time.perf_counter() - start) * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
