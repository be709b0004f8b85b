"""Citations of documents (api-spec §5.3, §5.5, §6.3): found in the documents' own
text, and written as the API's citation objects."""

from __future__ import annotations

from itertools import accumulate

from parley.core.generation import Citation, DocumentPart
from parley.protocol.responses import CharLocation, ContentBlockLocation, PageLocation
from parley.protocol.responses import Citation as WireCitation

_SEPARATOR = "\n\n"  # between the pages or blocks of `DocumentPart.content`


def find_citation(documents: tuple[DocumentPart, ...], quote: str) -> Citation | None:
    """The first place `quote` appears, verbatim, in a document that allows citations:
    its characters in a text document, the pages of a PDF or the blocks of a content
    document that hold it."""
    if not quote:
        return None
    for doc in documents:
        if not doc.citations:
            continue
        start = doc.content.find(quote)
        if start < 0:
            continue
        end = start + len(quote)
        if doc.kind == "text":
            return Citation("char_location", quote, doc.index, doc.title, start, end, doc.file_id)
        first, last = _units(doc, start, end)
        if doc.kind == "pdf":
            return Citation(
                "page_location", quote, doc.index, doc.title, first + 1, last + 2, doc.file_id
            )
        # A block is the smallest unit a content citation names: it quotes whole blocks.
        cited = _SEPARATOR.join(doc.chunks[first : last + 1])
        return Citation(
            "content_block_location", cited, doc.index, doc.title, first, last + 1, doc.file_id
        )
    return None


def _units(doc: DocumentPart, start: int, end: int) -> tuple[int, int]:
    """The first and last chunk (page or block) that characters start..end touch."""
    ends = list(accumulate(len(c) + len(_SEPARATOR) for c in doc.chunks))
    first = next(i for i, e in enumerate(ends) if start < e)
    last = next(i for i, e in enumerate(ends) if end <= e - len(_SEPARATOR) or i == len(ends) - 1)
    return first, max(first, last)


def wire_citation(citation: Citation, documents: tuple[DocumentPart, ...] = ()) -> WireCitation:
    """The API's citation object. A citation of a document that came from the Files
    API names its file, whoever made the citation (an upstream knows nothing of
    Parley's file ids: it was sent the file's content)."""
    file_id = citation.file_id
    if file_id is None and 0 <= citation.document_index < len(documents):
        file_id = documents[citation.document_index].file_id
    common = {
        "cited_text": citation.cited_text,
        "document_index": citation.document_index,
        "document_title": citation.document_title,
        "file_id": file_id,
    }
    if citation.kind == "char_location":
        return CharLocation(start_char_index=citation.start, end_char_index=citation.end, **common)
    if citation.kind == "page_location":
        return PageLocation(
            start_page_number=citation.start, end_page_number=citation.end, **common
        )
    return ContentBlockLocation(
        start_block_index=citation.start, end_block_index=citation.end, **common
    )
