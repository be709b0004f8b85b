"""Document blocks (api-spec §5.3) read into `DocumentPart`s: text, content, base64
PDF, URL and file sources. URLs and files are read through the injected readers of
`core.file_sources`; PDFs are read page by page (`core.documents`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from parley.core.documents import decode_base64_pdf, pdf_pages, plain_text
from parley.core.file_sources import (
    DocumentFetch,
    FileRead,
    file_sources_refused,
    wrong_file_type,
)
from parley.core.generation import DocumentKind, DocumentPart, EngineCapabilities
from parley.errors import InvalidRequestError
from parley.protocol.content import (
    Base64PDFSource,
    ContentBlockSource,
    DocumentBlockParam,
    FileDocumentSource,
    ImageBlockParam,
    PlainTextSource,
)


@dataclass(frozen=True)
class _Read:
    kind: DocumentKind
    chunks: tuple[str, ...]
    pdf: bytes | None = None
    file_id: str | None = None


async def read_document(
    block: DocumentBlockParam,
    path: str,
    index: int,
    *,
    model: str,
    capabilities: EngineCapabilities,
    urls: DocumentFetch | None,
    files: FileRead | None,
) -> DocumentPart:
    """`path` is the block's, e.g. `messages.0.content.1`; `index` its document_index."""
    if block.cites and not capabilities.citations:
        raise InvalidRequestError(
            f"{path}.document.citations: model {model} does not support citations; "
            "send the document without `citations`, or use a model that cites"
        )
    read = await _read_source(block, path, urls, files)
    return DocumentPart(
        kind=read.kind,
        chunks=read.chunks,
        index=index,
        title=block.title,
        context=block.context,
        citations=block.cites,
        file_id=read.file_id,
        pdf=read.pdf,
    )


async def _read_source(
    block: DocumentBlockParam, path: str, urls: DocumentFetch | None, files: FileRead | None
) -> _Read:
    source = block.source
    if isinstance(source, PlainTextSource):
        return _Read("text", (source.data,))
    if isinstance(source, ContentBlockSource):
        return _Read("content", _content_chunks(source, f"{path}.document.source.content"))
    if isinstance(source, Base64PDFSource):
        # Observed paths name PDF sources `pdf`: `messages.0.content.0.pdf.source.base64.data`.
        pdf_path = f"{path}.pdf.source.base64"
        data = decode_base64_pdf(source.data, pdf_path)
        return _Read("pdf", await _read_pdf(data, f"{pdf_path}.data"), data)
    if isinstance(source, FileDocumentSource):
        return await _file_document(source.file_id, f"{path}.document.source.file", files)
    url_path = f"{path}.document.source.url"
    if urls is None:
        raise InvalidRequestError(
            f"{url_path}: this server does not fetch documents from URLs; send the PDF "
            "as a base64 source or upload it with the Files API instead"
        )
    data = await urls.fetch_document(source.url, url_path)
    return _Read("pdf", await _read_pdf(data, url_path), data)


async def _file_document(file_id: str, path: str, files: FileRead | None) -> _Read:
    if files is None:
        raise file_sources_refused(path)
    file = await files.read(file_id, path)
    if file.mime_type == "application/pdf":
        return _Read("pdf", await _read_pdf(file.data, path), file.data, file.id)
    if file.mime_type == "text/plain":
        return _Read("text", (plain_text(file.data, path),), None, file.id)
    raise wrong_file_type(path, file, "document")


def _content_chunks(source: ContentBlockSource, path: str) -> tuple[str, ...]:
    if isinstance(source.content, str):
        blocks = [source.content]
    else:
        blocks = []
        for k, inner in enumerate(source.content):
            if isinstance(inner, ImageBlockParam):
                # Parley reads a content document as text; an image in it would be lost.
                raise InvalidRequestError(
                    f"{path}.{k}: images inside a content document are not supported by "
                    "this server; send the image as an image block beside the document"
                )
            blocks.append(inner.text)
    if not blocks:
        raise InvalidRequestError(f"{path}: a content document needs at least one block")
    if not all(blocks):
        raise InvalidRequestError("messages: text content blocks must be non-empty")
    return tuple(blocks)


async def _read_pdf(data: bytes, path: str) -> tuple[str, ...]:
    # Parsing a large PDF takes a while: off the event loop, so other requests go on.
    return await asyncio.to_thread(pdf_pages, data, path)
