"""The project documents itself: every reference to docs/ names a section that exists, and no file
points at a document outside the repository."""
import re
import subprocess

from tests.checkout import ROOT

# "docs/method.md, section 4.2", "docs/method.md 2.1", "docs/method.md, sections 4.1-4.2", "(4.3)"
REFERENCE = re.compile(r"docs/(\w+)\.md,?\s*(?:sections?\s*|\()?(\d+(?:\.\d+)?)(?:\s*-\s*(\d+(?:\.\d+)?))?")
OUTSIDE = re.compile(r"METHOD\.md|DESIGN\.md|\.\./shared|/work/shared")


def tracked_files() -> list:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()
    return [ROOT / name for name in out if (ROOT / name).is_file()]


def sections(doc: str) -> set[str]:
    """The numbers of the numbered headings of ``docs/<doc>.md`` ("2", "2.1", ...)."""
    text = (ROOT / "docs" / f"{doc}.md").read_text()
    return set(re.findall(r"^#{2,4} (\d+(?:\.\d+)?)\.? ", text, flags=re.M))


def references(paths) -> list[tuple[str, str, str]]:
    found = []
    for path in paths:
        if path.suffix not in (".py", ".md", ".yaml", ".yml", ".txt", ".toml", ".sh", ".tpl") or path.is_relative_to(ROOT / "docs"):
            continue
        for match in REFERENCE.finditer(path.read_text(errors="replace")):
            for number in filter(None, match.group(2, 3)):
                found.append((path.name, match.group(1), number))
    return found


def test_every_docs_reference_names_an_existing_section():
    refs = references(p for p in tracked_files() if p.name != "test_docs.py")   # it plants a wrong one
    assert len(refs) > 20, "the code points at docs/method.md from many places"
    known = {doc: sections(doc) for doc in {doc for _, doc, _ in refs}}
    missing = [(where, doc, number) for where, doc, number in refs if number not in known[doc]]
    assert missing == []


def test_the_reference_check_sees_a_wrong_section(tmp_path):
    planted = tmp_path / "x.py"
    planted.write_text('"""See docs/method.md, section 9.7 and docs/method.md 2.1."""\n')
    assert [n for _, _, n in references([planted])] == ["9.7", "2.1"]
    assert "9.7" not in sections("method") and "2.1" in sections("method")


def test_no_file_points_outside_the_repository():
    offenders = [str(p.relative_to(ROOT)) for p in tracked_files()
                 if p.suffix in (".py", ".md", ".yaml", ".yml", ".txt", ".toml", ".sh", ".json", ".tpl", "")
                 and p.name != "test_docs.py" and OUTSIDE.search(p.read_text(errors="replace"))]
    assert offenders == []
