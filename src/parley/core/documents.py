"""Document bytes into text (api-spec §5.3): PDFs page by page, plain text checked.

PDFs are read with pypdf: pure Python (no native library to build or ship, as with
llama.cpp's wheel), kept up to date, and its `extract_text()` gives one string per
page, which is the unit a `page_location` citation names. pdfminer.six lays text out
more faithfully, but is slower, larger and returns layout objects Parley would only
flatten again.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging

from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError, PdfReadError

from parley.errors import InvalidRequestError

# The API's limits for one PDF (observed: `...pdf.source.base64.data: A maximum of 100
# PDF pages may be provided.`; its request limit, 32 MB, bounds the bytes).
MAX_PDF_PAGES = 100
MAX_PDF_BYTES = 32 * 1024 * 1024

# Observed wordings, each after the source's path.
INVALID_PDF = "The PDF specified was not valid."
EMPTY_PDF = "PDF cannot be empty"
PROTECTED_PDF = "The PDF specified is password protected."

# pypdf reports damaged-but-readable files through logging; they are not Parley's errors.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def decode_base64_pdf(data: str, path: str) -> bytes:
    """`path` is the source's path, e.g. `messages.0.content.1.pdf.source.base64`."""
    if not data:
        raise InvalidRequestError(f"{path}.data: {EMPTY_PDF}")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{path}.data: {INVALID_PDF}") from None


def pdf_pages(data: bytes, path: str) -> tuple[str, ...]:
    """Each page's text, in order; a 400 naming `path` for a file that is no readable
    PDF, an encrypted one, or one over the page limit."""
    if not data:
        raise InvalidRequestError(f"{path}: {EMPTY_PDF}")
    if not data.lstrip()[:5] == b"%PDF-":
        raise InvalidRequestError(f"{path}: {INVALID_PDF}")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise InvalidRequestError(f"{path}: {PROTECTED_PDF}")
        count = len(reader.pages)
        if count > MAX_PDF_PAGES:
            raise InvalidRequestError(
                f"{path}: A maximum of {MAX_PDF_PAGES} PDF pages may be provided."
            )
        return tuple(_page_text(reader, i) for i in range(count))
    except (PdfReadError, FileNotDecryptedError, ValueError, KeyError, TypeError):
        raise InvalidRequestError(f"{path}: {INVALID_PDF}") from None
    except RecursionError:  # a crafted file with cyclic objects
        raise InvalidRequestError(f"{path}: {INVALID_PDF}") from None


def _page_text(reader: PdfReader, index: int) -> str:
    return reader.pages[index].extract_text().strip()


def plain_text(data: bytes, path: str) -> str:
    """A text/plain file's content; it must be UTF-8 (the API's text sources are
    JSON strings, so a file is held to the same)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError(f"{path}: the file is not valid UTF-8 text") from None
