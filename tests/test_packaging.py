"""The repository's own files: licence, citation, changelog, the typing marker in the
installed package, and no reference to a document that is not in the repository."""

import importlib.resources
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cff", ".hpp", ".cpp", ".cu", ".h", ".cmake", ""}
SKIP_DIRS = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".benchmarks"}

AUTHORS = [("Ziv", "Goldfeld"), ("Ewout", "van den Berg"), ("Kristjan", "Greenewald"), ("Igor", "Melnyk"),
           ("Nam", "Nguyen"), ("Brian", "Kingsbury"), ("Yury", "Polyanskiy")]


def test_license_is_bsd_3_clause_as_pyproject_says():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, the infoflow developers" in text
    assert "Neither the name of the copyright holder nor the names of its" in text
    assert 'license = { text = "BSD-3-Clause" }' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def _citation() -> dict:
    """CITATION.cff parsed with PyYAML where it is installed, else the keys checked here
    read line by line: the top-level scalars, the preferred citation's scalars (two
    spaces in) and its authors."""
    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    try:
        import yaml
    except ImportError:
        pass
    else:
        return yaml.safe_load(text)
    data, paper = {}, {}
    for line in text.splitlines():
        top = re.match(r"^([a-z-]+):\s*(\S.*)?$", line)
        inner = re.match(r"^  ([a-z-]+):\s*(\S.*)$", line)
        if top and top.group(2):
            data[top.group(1)] = top.group(2).strip('"')
        elif inner and "preferred-citation" in data:
            paper[inner.group(1)] = inner.group(2).strip('"')
        elif top and top.group(1) == "preferred-citation":
            data["preferred-citation"] = paper
    paper["authors"] = [{"given-names": given, "family-names": family}
                        for family, given in re.findall(r"- family-names: (.+)\n\s+given-names: (.+)", text)]
    for key in ("volume", "start", "end", "year"):
        paper[key] = int(paper[key])
    return data


def test_citation_file_cites_the_package_and_the_paper():
    data = _citation()
    assert str(data["cff-version"]) == "1.2.0"
    assert data["message"] and data["title"].startswith("infoflow")
    assert data["type"] == "software" and data["license"] == "BSD-3-Clause" and data["version"] == "0.1.0"
    paper = data["preferred-citation"]
    assert paper["type"] == "conference-paper"
    assert paper["title"] == "Estimating Information Flow in Deep Neural Networks"
    assert [(a["given-names"], a["family-names"]) for a in paper["authors"]] == AUTHORS
    assert paper["collection-title"] == "Proceedings of the 36th International Conference on Machine Learning"
    assert (paper["volume"], paper["start"], paper["end"], paper["year"]) == (97, 2299, 2308, 2019)
    assert paper["url"] == "http://proceedings.mlr.press/v97/goldfeld19a.html"


def test_changelog_has_an_unreleased_section_and_the_first_version():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog")
    assert re.search(r"^## \[Unreleased\]$", text, re.M) and re.search(r"^## \[0\.1\.0\]", text, re.M)
    assert text.index("## [Unreleased]") < text.index("## [0.1.0]")


def test_py_typed_is_in_the_installed_package():
    marker = importlib.resources.files("infoflow").joinpath("py.typed")
    assert marker.is_file()
    # The wheel copies the package folder's files that git does not ignore
    # (pyproject.toml: wheel.packages), so the marker must not be ignored.
    assert 'wheel.packages = ["python/infoflow"]' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    if shutil.which("git") and (ROOT / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", "python/infoflow/py.typed"], cwd=ROOT)
        assert ignored.returncode == 1


def _repository_text_files():
    for path in sorted(ROOT.rglob("*")):
        parts = set(path.relative_to(ROOT).parts)
        if parts & SKIP_DIRS or any(p.startswith("infoflow-") for p in parts) or not path.is_file():
            continue
        if path.suffix in TEXT_SUFFIXES and path.stat().st_size < 2_000_000:
            yield path


def test_no_file_cites_a_document_that_is_not_in_the_repository():
    """Every ``NAME.md`` mentioned exists in the repository, no text points to a design
    document by section (``DESIGN section 3``), and a SPEC is cited with its URL."""
    names = {p.name for p in _repository_text_files()}
    problems = []
    for path in _repository_text_files():
        if path == Path(__file__).resolve():
            continue  # its docstring and patterns name what it looks for
        text = path.read_text(encoding="utf-8", errors="replace")
        without_urls = re.sub(r"https?://\S+", "", text)
        for match in re.finditer(r"[\w./-]*\b([\w-]+\.md)\b", without_urls):
            if match.group(1) not in names:
                problems.append(f"{path.relative_to(ROOT)}: {match.group(0)} is not in the repository")
        for match in re.finditer(r"\bDESIGN\b.{0,30}", without_urls):
            problems.append(f"{path.relative_to(ROOT)}: cites a design document: {match.group(0)!r}")
        for match in re.finditer(r"\bSPEC\s*(\d+)", text):
            url = f"scientific-python.org/specs/spec-{int(match.group(1)):04d}"
            if url not in text[match.start():match.end() + 200]:
                problems.append(f"{path.relative_to(ROOT)}: SPEC {match.group(1)} without its URL ({url})")
    assert not problems, "\n".join(problems)
