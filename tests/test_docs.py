"""The docs name only what exists, and the README stays the front door.

Checked in README.md, CHANGELOG.md and docs/*.md, prose and code alike:
- a link or image target, `[text](target)`, that is not a URL: the file, from the page's folder, and
  its `#anchor`, if any, among the headings of the page it points to (GitHub's anchors);
- a path whose first part is one of the repository's top-level folders (`src/...`, `tests/...`,
  `benchmarks/...`, `docs/...`, `.ci/...`): from the repository root;
- a `.py` path whose first part is a subpackage of petalnet (`pipeline/cache.py`): from src/petalnet/;
- `make TARGET` in code: a target of the Makefile.
Every other path is an example for users (`runs/seed/best.pt`, `~/.cache/petalnet`, `RUN/split.json`,
`photos/<class>/`) and is not checked; nor is a template (`tests/test_<module>.py`).
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP_FOLDERS = ("src", "tests", "benchmarks", "docs", ".ci")
SUBPACKAGES = sorted(p.parent.name for p in (ROOT / "src/petalnet").glob("*/__init__.py"))
TARGETS = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))

FENCE = re.compile(r"^```.*?^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
NOT_AFTER = r"(?<![\w./~$-])"  # not inside a longer path or a URL
TOP_PATH = re.compile(NOT_AFTER + r"((?:%s)/[\w./<>*-]*)" % "|".join(map(re.escape, TOP_FOLDERS)))
PACKAGE_PATH = re.compile(NOT_AFTER + r"((?:%s)/[\w/-]*\.py)\b" % "|".join(SUBPACKAGES))
MAKE = re.compile(r"\bmake ([a-z][\w-]*)")

# (page, name) pairs known to be broken while a page is being rewritten, listed so that the rest stays
# checked; remove an entry when its page is fixed. None now.
PENDING = set()


def anchors(text):
    """GitHub's anchors for the headings of a page: lower case, punctuation dropped, spaces -> '-'."""
    seen = {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", FENCE.sub("", text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        yield slug if seen[slug] == 0 else f"{slug}-{seen[slug]}"


def broken(text, page):
    """The repository paths, links and make targets that `text`, the text of `page`, names but that
    do not exist."""
    code = "\n".join(FENCE.findall(text) + INLINE_CODE.findall(text))
    prose = INLINE_CODE.sub("", FENCE.sub("", text))
    found = []
    for target in LINK.findall(prose):
        if "://" in target or target.startswith("mailto:"):
            continue
        name, _, anchor = target.partition("#")
        linked = page.parent / name
        if name and not linked.exists():
            found.append(target)
        elif anchor and (not name or linked.suffix == ".md"):
            if anchor not in set(anchors(linked.read_text() if name else text)):
                found.append(target)
    for path in TOP_PATH.findall(text):
        path = path.rstrip(".,:;")
        if not re.search(r"[<>*]", path) and not (ROOT / path).exists():
            found.append(path)
    found += [p for p in PACKAGE_PATH.findall(text) if not (ROOT / "src/petalnet" / p).exists()]
    found += [f"make {t}" for t in MAKE.findall(code) if t not in TARGETS]
    return found


def test_every_path_a_page_names_exists():
    assert all((ROOT / folder).is_dir() for folder in TOP_FOLDERS)
    found = {(str(page.relative_to(ROOT)), name) for page in PAGES for name in broken(page.read_text(), page)}
    missing, fixed = sorted(found - PENDING), sorted(PENDING - found)
    assert not missing, "named in the docs but missing:\n" + "\n".join(f"{p}: {name}" for p, name in missing)
    assert not fixed, f"fixed, so remove them from PENDING: {fixed}"


def test_the_checker_finds_what_is_missing():
    page = ROOT / "docs" / "made-up.md"
    text = """# A page
Run `LIMIT=540 benchmarks/gpu_best.sh gpudata256`; see [recipes](recipes.md#no-such-heading),
[gone](gone.md), `pipeline/nosuch.py` and tests/test_nosuch.py.
```sh
make nosuchtarget
make demo
```
Not repository paths: runs/seed/best.pt, ~/.cache/petalnet/docs/x.md, RUN/split.json, photos/<class>/,
`tests/test_<subpackage>_<module>.py`, https://example.com/docs/x.md, $PETALNET_HOME/decoded.
Existing ones: [recipes](recipes.md#seed-the-tutorials-recipe), [the top](#a-page), ![a picture](serve_page.png),
`src/petalnet/pipeline/augment.py`, `pipeline/cache.py`, `docs/recipes.md`, `make test`.
"""
    assert broken(text, page) == ["recipes.md#no-such-heading", "gone.md", "benchmarks/gpu_best.sh",
                                  "tests/test_nosuch.py", "pipeline/nosuch.py", "make nosuchtarget"]


def test_readme_is_the_front_door():
    assert len((ROOT / "README.md").read_bytes()) <= 12_000
