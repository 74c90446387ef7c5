"""Bytes of a blob sent as an HTTP answer: the range asked for, and whatever the blob store gave for it (the
bytes themselves, a span of a local file sent by the kernel, or a stream)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

from aiohttp import hdrs, web

from fusionsync.server.errors import ApiError
from fusionsync.server.store import Content, FileSpan

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


def wanted_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """The span (start, count) that ``downloadRange=bytes=a-b`` or a ``Range`` header asks for (the query
    parameter wins); None for the whole content. 400 when malformed, 416 when outside the content."""
    wanted = request.query.get("downloadRange")
    by_query = wanted is not None
    if wanted is None:
        wanted = request.headers.get(hdrs.RANGE)
        if wanted is None:
            return None
    match = _RANGE.fullmatch(wanted)
    if match is None or match.group(1) == match.group(2) == "":
        if by_query:
            raise ApiError(400, f"downloadRange {wanted!r} is not of the form bytes=first-last")
        return None  # a Range header we do not understand (several ranges, other units) is ignored, as RFC 9110 allows
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        start = max(0, size - int(last))
    else:
        start = int(first)
        if last != "" and int(last) < start:
            raise _unsatisfiable(wanted, size)
    end = size if last == "" or first == "" else min(int(last) + 1, size)
    if start >= size:
        raise _unsatisfiable(wanted, size)
    return start, end - start


def _unsatisfiable(wanted: str, size: int) -> ApiError:
    return ApiError(
        416, f"range {wanted!r} is outside the content of {size} bytes", {"Content-Range": f"bytes */{size}"}
    )


async def send(
    request: web.Request, content: Content, size: int, span: tuple[int, int] | None, headers: dict[str, str]
) -> web.StreamResponse:
    """Answer ``content`` (the whole blob, or ``span`` of it) with ``headers``; to a HEAD, only the headers."""
    start, count = span if span is not None else (0, size)
    headers = {**headers, hdrs.ACCEPT_RANGES: "bytes"}
    status = 200
    if span is not None:
        status = 206
        headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{start + count - 1}/{size}"
    if isinstance(content, bytes) and request.method != "HEAD":
        return web.Response(body=content, status=status, headers=headers)
    answer = web.StreamResponse(status=status, headers=headers)
    answer.content_length = count
    try:
        await answer.prepare(request)
        if isinstance(content, FileSpan):
            await _sendfile(request, answer, content)
        elif not isinstance(content, bytes):
            async for chunk in content:
                await answer.write(chunk)
        await answer.write_eof()
    finally:
        await _close(content)
    return answer


async def _sendfile(request: web.Request, answer: web.StreamResponse, span: FileSpan) -> None:
    """The span, sent by the kernel (``sendfile``), as aiohttp's file answers are."""
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("Connection lost")
    loop = asyncio.get_running_loop()
    try:
        await loop.sendfile(transport, span.file, span.offset, span.count)
    except NotImplementedError:  # a transport that cannot (TLS): read and write
        pos, end = span.offset, span.offset + span.count
        while pos < end:
            chunk = await loop.run_in_executor(None, _pread, span.file, pos, min(2**20, end - pos))
            if not chunk:
                raise ConnectionResetError("the blob is shorter than recorded") from None
            await answer.write(chunk)
            pos += len(chunk)


def _pread(file: Any, pos: int, count: int) -> bytes:
    file.seek(pos)
    return bytes(file.read(count))


async def _close(content: Content) -> None:
    if isinstance(content, FileSpan):
        await asyncio.get_running_loop().run_in_executor(None, content.file.close)
    elif not isinstance(content, bytes):
        with contextlib.suppress(Exception):
            await content.aclose()  # type: ignore[attr-defined]
