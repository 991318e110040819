"""The literature store: chunks of documents in a chromadb collection on disk, searched by meaning.

Scores: embeddings are unit vectors and the collection uses cosine distance ``d`` in ``[0, 2]``, so a
passage's ``score`` is its cosine similarity to the query, ``1 - d``, clipped to ``[0, 1]`` (1 = same
direction, 0 = unrelated or opposed). Scores compare passages of one query; they are not probabilities.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import chromadb
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings

from athanor.errors import AthanorError
from athanor.ports import Passage
from knowledge.chunking import Chunk, chunk_document, read_document
from knowledge.embeddings import get_embedding_function

__all__ = ["CORPUS_DIR", "KnowledgeBase", "default_knowledge_base", "shipped_corpus"]

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")


class KnowledgeBase:
    """Documents chunked, embedded and kept in a persistent chromadb collection.

    Implements :class:`athanor.ports.KnowledgePort`. The embedding model is loaded on first use of the
    collection, not on construction.

    Args:
        path: Directory of the chromadb store; created if missing.
        collection: Collection name: 3-512 characters from ``[A-Za-z0-9._-]``, starting and ending
            with a letter or digit.

    Raises:
        AthanorError: The collection name is invalid or the store cannot be opened at ``path``.
    """

    def __init__(self, path: Path, collection: str = "literature") -> None:
        if not _COLLECTION_NAME.match(collection):
            raise AthanorError(
                f"knowledge collection name {collection!r} is invalid; use 3-512 characters from "
                "letters, digits, '.', '_' and '-', starting and ending with a letter or digit"
            )
        self.path = Path(path)
        self.collection_name = collection
        if self.path.exists() and not self.path.is_dir():
            raise AthanorError(f"knowledge store path {self.path} is a file; give a directory")
        try:
            self._client = chromadb.PersistentClient(
                path=str(self.path), settings=Settings(anonymized_telemetry=False)
            )
        except Exception as error:
            raise AthanorError(f"cannot open the knowledge store at {self.path}: {error}") from error
        self._collection: Collection | None = None

    def ingest(self, paths: list[Path]) -> int:
        """Chunk, embed and upsert documents; re-ingesting a document replaces its chunks.

        Every file is read and chunked before anything is written, so a bad file leaves the store
        unchanged. Chunks are keyed by id (``<doc-slug>#<n>``): the same document gives the same ids and
        is not duplicated, chunks whose text and metadata are already stored are not embedded again, and
        chunks left over from a longer earlier version are deleted.

        Args:
            paths: Markdown or plain-text files with optional front matter (see
                :mod:`knowledge.chunking`). Two different files must not share a file stem.

        Returns:
            The number of chunks added or changed (0 when every document is already stored as is).

        Raises:
            AthanorError: A file is missing, unreadable or malformed, or two files share a document
                slug; the message names the file.
        """
        documents: dict[str, tuple[Path, list[Chunk]]] = {}
        for path in dict.fromkeys(Path(p).resolve() for p in paths):
            document = read_document(path)
            slug = document.slug
            chunks = chunk_document(document)
            if slug in documents:
                raise AthanorError(
                    f"literature files {documents[slug][0]} and {path} both map to document id {slug!r}; "
                    "rename one of them"
                )
            documents[slug] = (path, chunks)
        collection = self._open()
        fresh: list[Chunk] = []
        stale: list[str] = []
        for slug, (_, chunks) in documents.items():
            stored = collection.get(where={"doc": slug}, include=["documents", "metadatas"])
            texts, metadatas = stored["documents"] or [], stored["metadatas"] or []
            have = {i: (t, m) for i, t, m in zip(stored["ids"], texts, metadatas, strict=True)}
            fresh += [c for c in chunks if have.get(c.chunk_id) != (c.text, c.metadata())]
            stale += sorted(set(have) - {c.chunk_id for c in chunks})
        if fresh:
            embeddings = get_embedding_function()([c.embedding_text for c in fresh])
            step = self._client.get_max_batch_size()
            for start in range(0, len(fresh), step):
                batch = fresh[start : start + step]
                collection.upsert(
                    ids=[c.chunk_id for c in batch],
                    documents=[c.text for c in batch],
                    metadatas=[c.metadata() for c in batch],
                    embeddings=embeddings[start : start + step],
                )
        if stale:
            collection.delete(ids=stale)
        return len(fresh)

    def search(self, query: str, k: int = 4) -> list[Passage]:
        """The ``k`` passages nearest in meaning to ``query``, best first.

        Args:
            query: Free text, e.g. ``"P3HT carbon nanotube conductivity"``.
            k: How many passages at most (fewer if the store holds fewer).

        Returns:
            Passages with their chunk id, text, citation (with DOI link when known) and score (cosine
            similarity in ``[0, 1]``, see the module docstring); ``[]`` for an empty store.

        Raises:
            AthanorError: ``query`` is blank or ``k`` is below 1.
        """
        if not query.strip():
            raise AthanorError("knowledge search query is empty; describe the system to look up")
        if k < 1:
            raise AthanorError(f"knowledge search k={k} must be at least 1")
        collection = self._open()
        total = collection.count()
        if total == 0:
            return []
        result = collection.query(
            query_texts=[query], n_results=min(k, total), include=["documents", "metadatas", "distances"]
        )
        rows = zip(
            result["ids"][0],
            _first(result["documents"]),
            _first(result["metadatas"]),
            _first(result["distances"]),
            strict=True,
        )
        return [
            Passage(
                chunk_id=chunk_id,
                text=text or "",
                citation=str((meta or {}).get("citation", "")),
                score=min(1.0, max(0.0, 1.0 - float(distance))),
            )
            for chunk_id, text, meta, distance in rows
        ]

    def count(self) -> int:
        """Number of chunks in the store."""
        return self._open().count()

    def sources(self) -> list[str]:
        """File names of the documents in the store, sorted."""
        metadatas = self._open().get(include=["metadatas"])["metadatas"] or []
        return sorted({str(m["source"]) for m in metadatas if m and "source" in m})

    def _open(self) -> Collection:
        if self._collection is None:
            try:
                collection = self._client.get_or_create_collection(
                    self.collection_name,
                    embedding_function=get_embedding_function(),
                    configuration={"hnsw": {"space": "cosine"}},
                )
            except ValueError as error:
                raise AthanorError(
                    f"knowledge collection {self.collection_name!r} in {self.path} was made with another "
                    f"embedding function ({error}); use a new store directory or collection name"
                ) from error
            space = (collection.configuration.get("hnsw") or {}).get("space", "cosine")
            if space != "cosine":
                raise AthanorError(
                    f"knowledge collection {self.collection_name!r} in {self.path} uses {space!r} distance, "
                    "not cosine; use a new store directory or collection name"
                )
            self._collection = collection
        return self._collection


def shipped_corpus() -> list[Path]:
    """The documents shipped with athanor (``knowledge/corpus/*.md`` except its README), sorted."""
    return sorted(p for p in CORPUS_DIR.glob("*.md") if p.name.lower() != "readme.md")


def default_knowledge_base(home: Path) -> KnowledgeBase:
    """The store under ``home / "knowledge"``, filled with the shipped corpus when it is empty.

    Args:
        home: athanor's data directory.

    Returns:
        The opened store (the embedding model is loaded by this call).
    """
    base = KnowledgeBase(Path(home) / "knowledge")
    if base.count() == 0:
        base.ingest(shipped_corpus())
    return base


def _first(column: list[Any] | None) -> list[Any]:
    return column[0] if column else []
