"""The README and docs/*.md hold together: links between the pages land on a file and a heading, and
the code's and configs' citations of a docs page name a section that page has.

(That every command of those pages runs is tests/test_readme_commands.py.)"""

from __future__ import annotations

import re
import subprocess

from conftest import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks (a ``# comment`` in a bash block is no heading)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            out.append(line)
    return out


def headings(text: str) -> list[str]:
    return [line.lstrip("#").strip() for line in prose(text) if re.match(r"#{1,6} ", line)]


def section_names(text: str) -> list[str]:
    """What a citation may name: the headings, and the bold labels that open a paragraph or list item."""
    labels = [m.group(1) for line in prose(text) for m in [re.match(r"\s*(?:- )?\*\*([^*]+?)[.:]?\*\*", line)] if m]
    return headings(text) + labels


def broken_links(page, text: str) -> list[str]:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", "\n".join(prose(text))):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path) if path else page
        if not file.exists():
            broken.append(f"{page.name}: {target} (no such file)")
        elif fragment and fragment not in {github_anchor(h) for h in headings(file.read_text())}:
            broken.append(f"{page.name}: {target} (no such heading)")
    return broken


def test_anchor_and_link_rules_catch_what_they_should(tmp_path):
    assert github_anchor("How far colour correction can go, and what each family learns alone") == \
        "how-far-colour-correction-can-go-and-what-each-family-learns-alone"
    assert github_anchor("Supervising the prior's scale") == "supervising-the-priors-scale"
    (tmp_path / "other.md").write_text("# Top\n\n```bash\n# not a heading\n```\n## A section: here\n")
    page = tmp_path / "page.md"
    text = "[a](other.md#a-section-here) [b](other.md#not-a-heading) [c](missing.md) [d](https://x.org/y)\n"
    assert broken_links(page, text) == ["page.md: other.md#not-a-heading (no such heading)",
                                        "page.md: missing.md (no such file)"]


def test_links_between_pages_resolve():
    broken, links = [], 0
    for page in DOCUMENTS:
        text = page.read_text()
        links += len(re.findall(r"\]\(([^)\s]+)\)", text))
        broken += broken_links(page, text)
    assert links >= 20 and not broken, broken


def unresolved_citations(name: str, text: str, root=ROOT) -> tuple[int, list[str]]:
    """(how many, which do not resolve) of the ``docs/X.md, "Name"`` citations in one file's text."""
    text = re.sub(r"\s*\n\s*#?\s*", " ", text)  # a citation may wrap, in a comment too
    found = re.findall(r"(docs/[\w-]+\.md)[,:]? \(?[\"'](.+?)[\"']", text)
    missing = []
    for page, section in found:
        path = root / page
        if not path.exists():
            missing.append(f"{name}: {page} (no such page)")
        elif not any(s.startswith(section) for s in section_names(path.read_text())):
            missing.append(f"{name}: {page}, {section!r} (no such heading or bold label there)")
    return len(found), missing


def test_citation_rule_catches_what_it_should(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "p.md").write_text("# P\n\n## The fill: towards it\n\n- **Do no harm.** Text.\n")
    text = '''x = 1  # see docs/p.md, "The fill"; also (docs/p.md, "Do no
    # harm") and docs/p.md, "Gone" and docs/q.md, "Any"'''
    assert unresolved_citations("f.py", text, tmp_path) == (
        4, ["f.py: docs/p.md, 'Gone' (no such heading or bold label there)", "f.py: docs/q.md (no such page)"])


def test_citations_of_docs_pages_name_one_of_their_sections():
    """``docs/X.md, "Name"`` in a source or config file: X exists and has a heading or bold label starting with Name."""
    files = subprocess.run(["git", "ls-files", "*.py", "*.yaml", "*.sh"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    cited, missing = 0, []
    for name in (f for f in files if f != "tests/test_docs.py"):  # its own examples cite made-up pages
        n, bad = unresolved_citations(name, (ROOT / name).read_text())
        cited, missing = cited + n, missing + bad
    assert cited >= 10 and not missing, missing
