from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import pytest

from athanor.errors import AthanorError
from knowledge.chunking import (
    MAX_CHARS,
    chunk_document,
    chunk_file,
    parse_document,
    read_document,
    slugify,
)
from knowledge.store import shipped_corpus

FRONT = (
    "---\n"
    "title: Conductive blends\n"
    'citation: A. Author, B. Author. "Blends: a study." J. Things 1, 2 (2021).\n'
    "doi: https://doi.org/10.1234/ABC.5\n"
    "---\n"
)


def _paragraph(tag: str, n_words: int) -> str:
    return " ".join(f"{tag}{i}" for i in range(n_words)) + "."


def test_front_matter_is_read_and_citation_gets_doi_link() -> None:
    doc = parse_document(FRONT + "# Blends\n\nSome text.\n", source="My Blends_2021.md")
    assert doc.title == "Conductive blends"
    assert doc.citation == 'A. Author, B. Author. "Blends: a study." J. Things 1, 2 (2021).'
    assert doc.doi == "10.1234/ABC.5"
    assert doc.reference == f"{doc.citation} https://doi.org/10.1234/ABC.5"
    assert doc.slug == "my-blends-2021"
    assert doc.source == "My Blends_2021.md"
    assert "title:" not in doc.body and "Some text." in doc.body


def test_front_matter_continuation_lines_and_quotes() -> None:
    text = "---\ntitle: 'Quoted: title'\ncitation: First part,\n  second part.\n---\nBody.\n"
    doc = parse_document(text, source="x.md")
    assert doc.title == "Quoted: title"
    assert doc.citation == "First part, second part."
    assert doc.doi == ""
    assert doc.reference == "First part, second part."


def test_without_front_matter_title_comes_from_first_heading() -> None:
    doc = parse_document("Intro line.\n\n# Real Title\n\nText.\n", source="notes.txt")
    assert doc.title == "Real Title"
    assert doc.citation == "Real Title"
    plain = parse_document("Just text.\n", source="plain notes.txt")
    assert plain.title == "plain notes"


def test_unclosed_front_matter_names_the_file() -> None:
    with pytest.raises(AthanorError, match=r"broken\.md.*never closed"):
        parse_document("---\ntitle: x\n\n# Heading\n", source="broken.md")


def test_malformed_front_matter_line_names_file_and_line() -> None:
    with pytest.raises(AthanorError, match=r"bad\.md: front matter line 3"):
        parse_document("---\ntitle: x\nthis is not a field\n---\nBody\n", source="bad.md")


def test_chunks_follow_headings_and_keep_every_paragraph() -> None:
    sections = {name: [_paragraph(name[:3], 60) for _ in range(4)] for name in ("Alpha", "Beta", "Gamma")}
    body = "# Doc title\n\nIntro paragraph.\n\n" + "".join(
        f"## {name}\n\n" + "\n\n".join(paras) + "\n\n" for name, paras in sections.items()
    )
    chunks = chunk_document(parse_document(FRONT + body, source="doc.md"))
    assert [c.chunk_id for c in chunks] == [f"doc#{i}" for i in range(len(chunks))]
    assert all(len(c.text) <= MAX_CHARS for c in chunks)
    for name, paras in sections.items():
        holding = [c for c in chunks if paras[0] in c.text]
        assert holding and all(name in c.heading for c in holding)
        for para in paras:
            assert any(para in c.text for c in chunks)
    # Each section's text is too long for one chunk but no chunk mixes two long sections.
    assert not any("Alp0" in c.text and "Gam0" in c.text for c in chunks)
    assert "Intro paragraph." in chunks[0].text
    assert all(c.document.reference.endswith("https://doi.org/10.1234/ABC.5") for c in chunks)


def test_consecutive_chunks_of_a_section_overlap() -> None:
    paras = [_paragraph(f"w{k}x", 40) for k in range(12)]
    doc = parse_document("## Long section\n\n" + "\n\n".join(paras), source="long.md")
    chunks = chunk_document(doc, max_chars=600, min_chars=300, overlap=100)
    assert len(chunks) >= 3
    for previous, current in pairwise(chunks):
        first_word = current.text.split()[0]
        assert first_word in previous.text.split()[-25:]
        assert current.text[:40] in previous.text


def test_small_sections_are_merged_up_to_the_limit() -> None:
    body = "".join(f"## Part {i}\n\nShort text number {i}.\n\n" for i in range(5))
    chunks = chunk_document(parse_document(body, source="small.md"), max_chars=1200, min_chars=800)
    assert len(chunks) == 1
    assert chunks[0].heading == "; ".join(f"Part {i}" for i in range(5))


def test_a_single_huge_paragraph_is_split_at_sentences() -> None:
    sentences = [f"Sentence {i} says something about conductivity in S/cm." for i in range(80)]
    doc = parse_document(" ".join(sentences), source="wall.txt")
    chunks = chunk_document(doc)
    assert len(chunks) > 1
    assert all(len(c.text) <= MAX_CHARS for c in chunks)
    for sentence in sentences:
        assert any(sentence in c.text for c in chunks)


def test_headings_inside_code_fences_are_not_sections() -> None:
    body = "## Real\n\nText.\n\n```\n# not a heading\n\nstill code\n```\n"
    chunks = chunk_document(parse_document(body, source="code.md"))
    assert len(chunks) == 1
    assert chunks[0].heading == "Real"
    assert "# not a heading\n\nstill code" in chunks[0].text


def test_chunk_ids_are_stable_across_reads(tmp_path: Path) -> None:
    path = tmp_path / "Stable Doc.md"
    path.write_text(FRONT + "\n\n".join(_paragraph("s", 50) for _ in range(8)), encoding="utf-8")
    first, second = chunk_file(path), chunk_file(path)
    assert [c.chunk_id for c in first] == [c.chunk_id for c in second]
    assert [c.text for c in first] == [c.text for c in second]
    assert all(c.chunk_id.startswith("stable-doc#") for c in first)


def test_metadata_is_flat_and_complete() -> None:
    chunk = chunk_document(parse_document(FRONT + "## Methods\n\nText.\n", source="m.md"))[0]
    meta = chunk.metadata()
    assert meta == {
        "doc": "m",
        "source": "m.md",
        "title": "Conductive blends",
        "heading": "Methods",
        "citation": chunk.document.reference,
        "doi": "10.1234/ABC.5",
        "index": 0,
    }
    assert chunk.embedding_text.startswith("Conductive blends\nMethods\n")


def test_unreadable_inputs_raise_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(AthanorError, match=r"missing\.md does not exist"):
        read_document(tmp_path / "missing.md")
    folder = tmp_path / "folder.md"
    folder.mkdir()
    with pytest.raises(AthanorError, match=r"folder\.md is a directory"):
        read_document(folder)
    binary = tmp_path / "latin.txt"
    binary.write_bytes("café".encode("latin-1"))
    with pytest.raises(AthanorError, match=r"latin\.txt is not UTF-8"):
        read_document(binary)
    with pytest.raises(AthanorError, match=r"paper\.pdf: unsupported type"):
        read_document(tmp_path / "paper.pdf")


def test_inconsistent_sizes_are_rejected() -> None:
    doc = parse_document("Text.", source="t.md")
    with pytest.raises(AthanorError, match="overlap"):
        chunk_document(doc, max_chars=200, min_chars=100, overlap=150)


def test_slugify() -> None:
    assert slugify("P3HT_CNT  Conductivity (2021)") == "p3ht-cnt-conductivity-2021"
    assert re.fullmatch(r"doc-[0-9a-f]{8}", slugify("___"))


def test_shipped_corpus_documents_are_cited_and_chunk_cleanly() -> None:
    paths = shipped_corpus()
    assert 3 <= len(paths) <= 6
    assert all(p.name.lower() != "readme.md" for p in paths)
    for path in paths:
        doc = read_document(path)
        assert doc.title != path.stem, f"{path.name} has no front matter title"
        assert doc.citation != doc.title, f"{path.name} has no citation"
        assert re.fullmatch(r"10\.\d{4,}/\S+", doc.doi), f"{path.name} has no DOI"
        text = " ".join(doc.body.split())
        assert "summary compiled from the published dataset" in text and "not the text" in text
        chunks = chunk_document(doc)
        assert chunks and all(len(c.text) <= MAX_CHARS for c in chunks)
