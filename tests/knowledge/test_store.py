from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from chromadb.api.shared_system_client import SharedSystemClient

from athanor.errors import AthanorError
from athanor.ports import KnowledgePort
from knowledge.chunking import chunk_file
from knowledge.embeddings import EMBEDDING_DIM, get_embedding_function
from knowledge.store import KnowledgeBase, default_knowledge_base, shipped_corpus

P3HT_DOI = "10.1002/adfm.202102606"


@pytest.fixture(scope="module")
def no_network() -> Iterator[None]:
    """Refuse internet connections while the model loads and the store works (local sockets pass)."""
    original = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access attempted: {address}")
        original(self, address)

    socket.socket.connect = guarded  # type: ignore[method-assign]
    yield
    socket.socket.connect = original  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory, no_network: None) -> Path:
    path = tmp_path_factory.mktemp("kb")
    assert KnowledgeBase(path).ingest(shipped_corpus()) == _expected_chunks()
    return path


@pytest.fixture
def kb(store_dir: Path) -> KnowledgeBase:
    return KnowledgeBase(store_dir)


def _expected_chunks() -> int:
    return sum(len(chunk_file(p)) for p in shipped_corpus())


def test_embeddings_are_unit_vectors_of_the_model_dimension(no_network: None) -> None:
    vectors = get_embedding_function()(["P3HT", "silver nanoparticles"])
    assert [v.shape for v in vectors] == [(EMBEDDING_DIM,), (EMBEDDING_DIM,)]
    assert all(abs(float((v * v).sum()) - 1.0) < 1e-4 for v in vectors)
    assert get_embedding_function() is get_embedding_function()


def test_ingested_corpus_is_all_there(kb: KnowledgeBase) -> None:
    assert isinstance(kb, KnowledgePort)
    assert kb.count() == _expected_chunks()
    assert kb.sources() == sorted(p.name for p in shipped_corpus())


def test_p3ht_query_returns_p3ht_chunk_first_with_its_citation(kb: KnowledgeBase) -> None:
    passages = kb.search("P3HT carbon nanotube conductivity", k=4)
    assert len(passages) == 4
    top = passages[0]
    assert top.chunk_id.startswith("p3ht-cnt-conductivity#")
    assert "Bash" in top.citation and P3HT_DOI in top.citation
    assert "P3HT" in top.text
    scores = [p.score for p in passages]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert top.score > passages[-1].score


@pytest.mark.parametrize(
    ("query", "document"),
    [
        ("silver nanoparticle synthesis UV-Vis absorbance spectrum", "agnp-flow-synthesis"),
        ("palladium catalysed cross-coupling reaction yield", "suzuki-coupling-yield"),
        ("mixing dyes to reach a target green colour", "colour-mixing-bob"),
        ("E-factor of a continuous flow reaction with morpholine", "snar-flow-efactor"),
    ],
)
def test_each_system_is_found_by_meaning(kb: KnowledgeBase, query: str, document: str) -> None:
    assert kb.search(query, k=2)[0].chunk_id.startswith(f"{document}#")


def test_k_larger_than_store_returns_everything(kb: KnowledgeBase) -> None:
    passages = kb.search("conductivity", k=1000)
    assert len(passages) == kb.count()
    assert len({p.chunk_id for p in passages}) == len(passages)


def test_reingest_keeps_the_count_and_embeds_nothing(kb: KnowledgeBase) -> None:
    before = kb.count()
    assert kb.ingest(shipped_corpus()) == 0
    assert kb.count() == before
    assert kb.search("P3HT carbon nanotube conductivity", k=1)[0].chunk_id.startswith(
        "p3ht-cnt-conductivity#"
    )


def test_store_persists_across_instances(store_dir: Path) -> None:
    first = KnowledgeBase(store_dir).search("P3HT carbon nanotube conductivity", k=3)
    # chromadb shares one in-memory system per path within a process: drop it so the data come from disk.
    SharedSystemClient.clear_system_cache()
    again = KnowledgeBase(store_dir)
    assert again.count() == _expected_chunks()
    assert again.sources() == sorted(p.name for p in shipped_corpus())
    assert [p.chunk_id for p in again.search("P3HT carbon nanotube conductivity", k=3)] == [
        p.chunk_id for p in first
    ]


def test_empty_store_returns_no_passages(tmp_path: Path, no_network: None) -> None:
    empty = KnowledgeBase(tmp_path / "empty")
    assert empty.search("P3HT carbon nanotube conductivity") == []
    assert empty.count() == 0
    assert empty.sources() == []


def test_shrunk_document_loses_its_stale_chunks(tmp_path: Path, no_network: None) -> None:
    base = KnowledgeBase(tmp_path / "store")
    doc = tmp_path / "notes.md"
    paragraphs = [f"Paragraph {i} on annealing temperature and film thickness." * 6 for i in range(10)]
    doc.write_text("---\ntitle: Notes\ncitation: Lab notes (2024).\n---\n" + "\n\n".join(paragraphs))
    long_count = base.ingest([doc])
    assert long_count > 1 and base.count() == long_count
    doc.write_text("---\ntitle: Notes\ncitation: Lab notes (2024).\n---\nOnly one short paragraph now.\n")
    assert base.ingest([doc]) == 1
    assert base.count() == 1
    assert base.search("annealing", k=5)[0].text.endswith("Only one short paragraph now.")


def test_bad_file_raises_and_writes_nothing(tmp_path: Path, no_network: None) -> None:
    base = KnowledgeBase(tmp_path / "store")
    good = shipped_corpus()[0]
    with pytest.raises(AthanorError, match=r"nope\.md does not exist"):
        base.ingest([good, tmp_path / "nope.md"])
    assert base.count() == 0


def test_two_files_with_one_slug_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "same.md").write_text("Text.")
    with pytest.raises(AthanorError, match="rename one of them"):
        KnowledgeBase(tmp_path / "store").ingest([tmp_path / "a" / "same.md", tmp_path / "b" / "same.md"])


def test_bad_arguments_raise_athanor_errors(tmp_path: Path, kb: KnowledgeBase) -> None:
    with pytest.raises(AthanorError, match="collection name"):
        KnowledgeBase(tmp_path / "x", collection="x")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AthanorError, match="is a file"):
        KnowledgeBase(blocker)
    with pytest.raises(AthanorError, match="query is empty"):
        kb.search("   ")
    with pytest.raises(AthanorError, match="k=0"):
        kb.search("P3HT", k=0)


def test_default_knowledge_base_ingests_the_corpus_once(tmp_path: Path, no_network: None) -> None:
    base = default_knowledge_base(tmp_path)
    assert (tmp_path / "knowledge").is_dir()
    assert base.count() == _expected_chunks()
    extra = tmp_path / "extra.md"
    extra.write_text("---\ntitle: Extra\ncitation: Extra (2024).\n---\nAn extra note.\n")
    base.ingest([extra])
    again = default_knowledge_base(tmp_path)
    assert again.count() == _expected_chunks() + 1
    assert "extra.md" in again.sources()
