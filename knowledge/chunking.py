"""Read Markdown or plain-text documents and split them into citable chunks.

A document may open with a front matter block of ``key: value`` lines between two ``---`` lines::

    ---
    title: P3HT/CNT composite conductivity
    citation: D. Bash et al. "Multi-fidelity ..." Adv. Funct. Mater. 2102606 (2021).
    doi: 10.1002/adfm.202102606
    ---

Values run to the end of the line (colons inside them are fine); an indented line continues the
previous value. Chunks follow the document's headings and paragraphs: a section is packed paragraph by
paragraph into chunks of at most ``max_chars`` characters, consecutive chunks of one section share a
short overlap, and a small section is merged with the next one when both fit in one chunk. Chunk ids are
``<doc-slug>#<n>``, where the slug comes from the file name, so re-reading the same file gives the same
ids.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from athanor.errors import AthanorError

__all__ = [
    "MAX_CHARS",
    "MIN_CHARS",
    "OVERLAP_CHARS",
    "SUPPORTED_SUFFIXES",
    "Chunk",
    "Document",
    "chunk_document",
    "chunk_file",
    "parse_document",
    "read_document",
    "slugify",
]

MAX_CHARS = 1200
MIN_CHARS = 800
OVERLAP_CHARS = 150
SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt")

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_FIELD = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*(.*)$")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
_DOI_PREFIX = re.compile(r"^(https?://(dx\.)?doi\.org/|doi:\s*)", re.IGNORECASE)


@dataclass(frozen=True)
class Document:
    """A document read from disk, with its front matter.

    Attributes:
        slug: Identifier derived from the file name; prefix of every chunk id.
        source: The file name (no directories), e.g. ``"p3ht-cnt-conductivity.md"``.
        title: Front matter ``title``, else the first ``#`` heading, else the file stem.
        citation: Front matter ``citation``, else the title.
        doi: Front matter ``doi`` without any ``https://doi.org/`` prefix; ``""`` when absent.
        body: The text after the front matter.
    """

    slug: str
    source: str
    title: str
    citation: str
    doi: str
    body: str

    @property
    def reference(self) -> str:
        """The citation, followed by a DOI link unless the citation already holds the DOI."""
        if self.doi and self.doi.lower() not in self.citation.lower():
            return f"{self.citation} https://doi.org/{self.doi}"
        return self.citation


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage of a document.

    Attributes:
        chunk_id: ``<doc-slug>#<index>``; stable for the same file content.
        index: Position of the chunk in its document, from 0.
        text: The passage as it appears in the document (including heading lines it starts with).
        heading: Heading trail of the section the chunk comes from, e.g. ``"Methods > Columns"``;
            trails of merged sections are joined by ``"; "``. A document's single ``#`` heading is its
            title and is left out; ``""`` for text before the first heading.
        document: The document the chunk belongs to.
    """

    chunk_id: str
    index: int
    text: str
    heading: str
    document: Document

    @property
    def embedding_text(self) -> str:
        """What gets embedded: the title and heading give short passages their context."""
        return f"{self.document.title}\n{self.heading}\n\n{self.text}"

    def metadata(self) -> dict[str, str | int]:
        """Flat metadata for the vector store (strings and ints only, never None)."""
        doc = self.document
        return {
            "doc": doc.slug,
            "source": doc.source,
            "title": doc.title,
            "heading": self.heading,
            "citation": doc.reference,
            "doi": doc.doi,
            "index": self.index,
        }


def slugify(name: str) -> str:
    """Lower-case ``name`` and keep runs of letters and digits joined by ``-``.

    Args:
        name: A file stem such as ``"P3HT_CNT conductivity"``.

    Returns:
        ``"p3ht-cnt-conductivity"``; a short hash of ``name`` if nothing alphanumeric is left.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "doc-" + hashlib.sha1(name.encode()).hexdigest()[:8]


def read_document(path: Path) -> Document:
    """Read a Markdown or plain-text file (UTF-8) and its front matter.

    Args:
        path: The file.

    Returns:
        The parsed document.

    Raises:
        AthanorError: The file is missing, is a directory, is unreadable, is not UTF-8 text, has an
            unsupported suffix or malformed front matter. The message names the file.
    """
    path = Path(path)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise AthanorError(
            f"literature file {path}: unsupported type {path.suffix or '(no suffix)'!r}; "
            f"give Markdown or plain text ({', '.join(SUPPORTED_SUFFIXES)})"
        )
    if not path.exists():
        raise AthanorError(f"literature file {path} does not exist; check the path")
    if path.is_dir():
        raise AthanorError(f"literature file {path} is a directory; pass the files in it instead")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise AthanorError(f"literature file {path} is not UTF-8 text; convert it to UTF-8") from None
    except OSError as error:
        raise AthanorError(
            f"literature file {path} cannot be read ({error.strerror}); check its permissions"
        ) from None
    return parse_document(text, source=path.name)


def parse_document(text: str, source: str) -> Document:
    """Split off and read the front matter of a document's text.

    Args:
        text: The whole file content.
        source: The file name, used for the slug, for fallbacks and in error messages.

    Returns:
        The parsed document.

    Raises:
        AthanorError: The front matter is not closed or has a line that is not ``key: value``.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    fields: dict[str, str] = {}
    body = text
    lines = text.split("\n")
    if lines and lines[0].strip() == "---":
        try:
            end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() in ("---", "..."))
        except StopIteration:
            raise AthanorError(
                f"{source}: front matter opened with '---' on line 1 is never closed; "
                "add a line '---' after its last field"
            ) from None
        fields = _parse_fields(lines[1:end], source)
        body = "\n".join(lines[end + 1 :])
    stem = Path(source).stem
    title = fields.get("title") or _first_heading(body) or stem
    return Document(
        slug=slugify(stem),
        source=source,
        title=title,
        citation=fields.get("citation") or title,
        doi=_DOI_PREFIX.sub("", fields.get("doi", "")).strip(),
        body=body,
    )


def chunk_file(
    path: Path, max_chars: int = MAX_CHARS, min_chars: int = MIN_CHARS, overlap: int = OVERLAP_CHARS
) -> list[Chunk]:
    """Read a file and chunk it; see :func:`read_document` and :func:`chunk_document`."""
    return chunk_document(read_document(path), max_chars=max_chars, min_chars=min_chars, overlap=overlap)


def chunk_document(
    doc: Document, max_chars: int = MAX_CHARS, min_chars: int = MIN_CHARS, overlap: int = OVERLAP_CHARS
) -> list[Chunk]:
    """Split a document into chunks by headings and paragraphs.

    Args:
        doc: The document.
        max_chars: Upper bound on a chunk's length, in characters.
        min_chars: A chunk shorter than this is merged with the next section's first chunk when the
            two fit in ``max_chars`` together.
        overlap: Characters (about, cut at a word boundary) that a chunk repeats from the end of the
            previous chunk of the same section.

    Returns:
        The chunks in document order, ids ``<slug>#0``, ``<slug>#1``, ...; empty for an empty body.

    Raises:
        AthanorError: The sizes are inconsistent (need ``0 <= overlap < max_chars // 2`` and
            ``min_chars <= max_chars``).
    """
    if not (0 <= overlap < max_chars // 2 and 0 < min_chars <= max_chars):
        raise AthanorError(
            f"chunk sizes max_chars={max_chars}, min_chars={min_chars}, overlap={overlap} are inconsistent; "
            "need 0 <= overlap < max_chars / 2 and 0 < min_chars <= max_chars"
        )
    sections = _sections_of(doc.body)
    level_one = {path[0] for path, _ in sections if path and path[0][0] == 1}
    blocks: list[tuple[list[str], str]] = []  # (heading trails, text)
    for path, paragraphs in sections:
        shown = path[1:] if len(level_one) == 1 and path and path[0] in level_one else path
        trail = " > ".join(title for _, title in shown)
        for text in _pack(paragraphs, max_chars, overlap):
            if blocks and len(blocks[-1][1]) < min_chars and len(blocks[-1][1]) + 2 + len(text) <= max_chars:
                trails, previous = blocks[-1]
                blocks[-1] = ([*trails, trail] if trail not in trails else trails, f"{previous}\n\n{text}")
            else:
                blocks.append(([trail], text))
    return [
        Chunk(
            chunk_id=f"{doc.slug}#{i}",
            index=i,
            text=text,
            heading="; ".join(t for t in trails if t),
            document=doc,
        )
        for i, (trails, text) in enumerate(blocks)
    ]


def _parse_fields(lines: list[str], source: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for number, line in enumerate(lines, start=2):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and key is not None:
            fields[key] = f"{fields[key]} {line.strip()}".strip()
            continue
        match = _FIELD.match(line)
        if match is None:
            raise AthanorError(
                f"{source}: front matter line {number} {line.strip()!r} is not 'key: value'; "
                "write e.g. 'citation: A. Author et al. Journal 1, 2 (2021).'"
            )
        key = match.group(1).lower()
        fields[key] = _unquote(match.group(2).strip())
    return fields


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _first_heading(body: str) -> str:
    for path, _ in _sections_of(body):
        if path:
            return path[0][1]
    return ""


def _sections_of(body: str) -> list[tuple[tuple[tuple[int, str], ...], list[str]]]:
    """Split a body into (heading path of (level, title), paragraphs); a heading line opens its section."""
    sections: list[tuple[tuple[tuple[int, str], ...], list[str]]] = []
    stack: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    current: list[str] = []
    in_fence = False

    def end_paragraph() -> None:
        text = "\n".join(current).strip()
        if text:
            paragraphs.append(text)
        current.clear()

    def end_section() -> None:
        end_paragraph()
        if paragraphs:
            sections.append((tuple(stack), list(paragraphs)))
        paragraphs.clear()

    for line in body.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
            current.append(line)
            continue
        heading = None if in_fence else _HEADING.match(line)
        if heading:
            end_section()
            level = len(heading.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading.group(2)))
            paragraphs.append(line.strip())
        elif not line.strip() and not in_fence:
            end_paragraph()
        else:
            current.append(line.rstrip())
    end_section()
    return sections


def _pack(paragraphs: list[str], max_chars: int, overlap: int) -> list[str]:
    """Greedily join paragraphs into chunks of at most ``max_chars``, each repeating the previous tail."""
    pieces = [piece for p in paragraphs for piece in _split_long(p, max_chars - overlap - 2)]
    chunks: list[str] = []
    block = ""
    fresh = False  # whether ``block`` holds anything beyond the overlap it was seeded with
    for piece in pieces:
        if not block:
            block, fresh = piece, True
        elif len(block) + 2 + len(piece) <= max_chars:
            block, fresh = f"{block}\n\n{piece}", True
        else:
            chunks.append(block)
            seed = _tail(block, overlap)
            block, fresh = (f"{seed}\n\n{piece}" if seed else piece), True
    if block and fresh:
        chunks.append(block)
    return chunks


def _split_long(text: str, limit: int) -> list[str]:
    """Split text longer than ``limit`` at lines, then sentence ends, then spaces, then anywhere."""
    if len(text) <= limit:
        return [text]
    for separator in ("\n", _SENTENCE_END, " "):
        parts = separator.split(text) if isinstance(separator, re.Pattern) else text.split(separator)
        if len(parts) > 1:
            joiner = "\n" if separator == "\n" else " "
            out: list[str] = []
            for part in parts:
                for piece in _split_long(part, limit):
                    if out and len(out[-1]) + len(joiner) + len(piece) <= limit:
                        out[-1] = f"{out[-1]}{joiner}{piece}"
                    else:
                        out.append(piece)
            return out
    return [text[i : i + limit] for i in range(0, len(text), limit)]


def _tail(text: str, size: int) -> str:
    """The last ``size`` characters of ``text`` or fewer, starting at a word boundary."""
    if size <= 0 or len(text) <= size:
        return "" if size <= 0 else text
    tail = text[-size:]
    cut = re.search(r"\s", tail)
    return tail[cut.end() :].lstrip() if cut else tail
