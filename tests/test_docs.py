"""The README and docs/ point at things that exist: relative links reach a file (and a heading,
for ``#anchor`` links), and the config groups, options and keys named in backticks are in conf/."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FILE_SUFFIXES = re.compile(r"\.(md|html|json|csv|png|pt|pth|pkl|ckpt|npz|npy|ya?ml|py|txt|log)$")


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _without_code(text: str) -> str:
    """The page's prose: fenced blocks and inline code removed (links inside them are examples)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces
    to ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (repeats get GitHub's ``-1``, ``-2`` suffixes)."""
    seen: dict[str, int] = {}
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.M):
        s = slug(heading)
        seen[s] = seen.get(s, -1) + 1
    out = set()
    for s, n in seen.items():
        out |= {s} | {f"{s}-{i}" for i in range(1, n + 1)}
    return out


def test_slug_follows_github():
    assert slug("`lsap-demo`: the demo") == "lsap-demo-the-demo"
    assert slug("Evaluation memory (`bench/eval_memory.py`)") == (
        "evaluation-memory-bencheval_memorypy"
    )
    assert slug("Result refinement: pivotal tuning (PTI)") == "result-refinement-pivotal-tuning-pti"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page):
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _without_code(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            bad.append(f"{target}: no heading with that anchor in {dest.name}")
    assert not bad, f"{_rel(page)}: " + "; ".join(bad)


# --- config names ---------------------------------------------------------------------------


def _groups() -> set[str]:
    """Config groups: folders of conf/ holding options (``hydra/launcher`` included)."""
    return {str(p.parent.relative_to(CONF)) for p in CONF.rglob("*.yaml") if p.parent != CONF}


def _key_paths(node, prefix: str) -> set[str]:
    out = {prefix} if prefix else set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "defaults" and not prefix:
                continue
            out |= _key_paths(v, f"{prefix}.{k}" if prefix else str(k))
    return out


@cache
def config_keys() -> frozenset[str]:
    """Every dotted key some file of conf/ sets, at the place Hydra puts it: primary configs at
    the root, a group's options under the group (or their ``# @package``)."""
    keys: set[str] = set()
    for path in CONF.rglob("*.yaml"):
        text = path.read_text()
        m = re.match(r"# @package (\S+)", text)
        if m:
            package = "" if m.group(1) == "_global_" else m.group(1)
        else:
            package = "" if path.parent == CONF else str(path.parent.relative_to(CONF))
        package = package.replace("/", ".")
        keys |= _key_paths(yaml.safe_load(text) or {}, package)
    return frozenset(keys)


def _roots() -> set[str]:
    """First parts of config keys a page may name: groups and the primary configs' top keys."""
    roots = {g.split("/")[0] for g in _groups()}
    for path in CONF.glob("*.yaml"):
        roots |= set((yaml.safe_load(path.read_text()) or {}).keys()) - {"defaults"}
    return roots


def _named_settings(text: str) -> list[str]:
    """Words in inline code and in bash blocks that look like ``group=option``,
    ``a.b.c=value``, ``+a.b.c=value`` or a bare ``a.b.c`` key."""
    spans = re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    spans += re.findall(r"`([^`\n]+)`", prose)
    words = []
    for span in spans:
        span = re.sub(r"#.*", "", span) if "\n" in span else span
        words += re.findall(r"(?<![\w./$-])\+?[a-z_][\w/]*(?:\.[a-z_]\w*)*(?:=\S*)?", span)
    return words


def _problems(word: str, groups: set[str], keys: frozenset[str], roots: set[str]) -> str | None:
    key, eq, value = word.partition("=")
    added = key.startswith("+")
    key = key.lstrip("+")
    if key.startswith("hydra") or key.split(".")[0].split("/")[0] not in roots:
        return None
    if "." not in key:
        value = value.strip("'\"),")
        if not eq or key not in groups or value in ("", "...") or value.startswith("$"):
            return None  # a plain word, a placeholder, or a top-level value such as codes=...
        options = value.strip("[]").split(",") if value.startswith("[") else value.split(",")
        if not all(re.fullmatch(r"[\w/.-]*", o) for o in options):
            return None  # a list of override strings (lsap-calibrate's invert=[...]), not options
        missing = [
            o for o in options if o not in ("null", "") and not (CONF / key / f"{o}.yaml").exists()
        ]
        return f"{word}: no conf/{key}/{missing[0]}.yaml" if missing else None
    if FILE_SUFFIXES.search(key):
        return None  # a file name such as report.html
    if added:  # a new key: its parent must exist
        parent = key.rsplit(".", 1)[0]
        return None if parent in keys else f"{word}: no key {parent} in conf/"
    return None if key in keys else f"{word}: no key {key} in conf/"


def test_config_key_index_sees_packages_and_groups():
    """The index the page check relies on: a group's option, an ``@package`` option, an
    experiment (``_global_``), a primary config's key; and it knows what is not there."""
    keys = config_keys()
    assert {"refinement.save.max_total_gb", "editing.sefa.factors", "log.curves"} <= keys
    assert "encoder.progressive_step_every" in keys and "data.toy.num_images" in keys
    assert "refinement.save.max_total_tb" not in keys
    groups, roots = _groups(), _roots()
    assert _problems("refinement=pti", groups, keys, roots) is None
    assert _problems("refinement=ptx", groups, keys, roots)
    assert _problems("editing=[sefa,ganspace]", groups, keys, roots) is None
    assert _problems("editing=[sefa,gansp]", groups, keys, roots)
    assert _problems("loss.sncd=0.5", groups, keys, roots) is None
    assert _problems("loss.sncdd=0.5", groups, keys, roots)
    assert _problems("+editing.interfacegan.directions.age=a.pt", groups, keys, roots) is None
    assert _problems("+editing.interfacegan.direction.age=a.pt", groups, keys, roots)
    assert _problems("lsap.io.load_codes", groups, keys, roots) is None  # not a config key
    assert _problems("generator=...)", groups, keys, roots) is None  # a Python placeholder
    assert _problems('invert=["generator=ffhq","a=1"]', groups, keys, roots) is None
    assert _problems("report.html", groups, keys, roots) is None


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_named_config_settings_exist(page):
    groups, keys, roots = _groups(), config_keys(), _roots()
    bad = [p for w in _named_settings(page.read_text()) if (p := _problems(w, groups, keys, roots))]
    assert not bad, f"{_rel(page)}: " + "; ".join(sorted(set(bad)))


# --- files and Python names -----------------------------------------------------------------

# a path; one with a pattern in it (`encoder_{lsap_e,e4e}.pt`, `<name>.pt`) is not checked
REPO_PATH = re.compile(
    r"(?<![\w./-])((?:lsap|conf|bench|scripts|tests|notebooks)/[\w./-]*+)(?![{<*])"
)
PY_NAME = re.compile(r"(?<![\w./:-])(lsap(?:\.\w+)+)")


def _inline_code(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))


def _path_exists(path: str) -> bool:
    """A repository path, or ``module_path.function`` (``tests/invert_helpers.make_images``)."""
    path = path.rstrip("/.")
    return (ROOT / path).exists() or (ROOT / re.sub(r"\.\w+$", ".py", path)).exists()


def resolve(name: str) -> bool:
    """Whether ``lsap.a.b.c`` is a module, or an attribute of the longest importable prefix."""
    import importlib

    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_name_checks_can_fail():
    assert resolve("lsap.load_generator") and resolve("lsap.alignment.sncd")
    assert not resolve("lsap.alignment.no_such_function") and not resolve("lsap.nowhere.x")
    assert _path_exists("lsap/alignment/") and _path_exists("tests/invert_helpers.make_images")
    assert not _path_exists("lsap/systems/no_such_module.py")


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_named_files_and_python_names_exist(page):
    """Repository paths and ``lsap.*`` names in inline code, and the ``from lsap... import``
    lines of the page's Python examples, point at files and objects that exist."""
    text = page.read_text()
    bad = []
    for span in _inline_code(text):
        if span.startswith("format:"):  # a file format tag, not a module
            continue
        bad += [f"{p}: no such file" for p in REPO_PATH.findall(span) if not _path_exists(p)]
        bad += [f"{n}: not importable" for n in PY_NAME.findall(span) if not resolve(n)]
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        for script in re.findall(r"python3? ((?:bench|scripts)/\S+\.py)", block):
            bad += [] if _path_exists(script) else [f"{script}: no such script"]
    for block in re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        for module, names in re.findall(r"^from (lsap[\w.]*) import ([\w, ]+)$", block, flags=re.M):
            bad += [
                f"from {module} import {n}: missing"
                for n in (n.strip() for n in names.split(","))
                if not resolve(f"{module}.{n}")
            ]
    assert not bad, f"{_rel(page)}: " + "; ".join(sorted(set(bad)))


# --- the documented commands ----------------------------------------------------------------

COMMANDS = {
    "lsap-invert": "invert",
    "lsap-train": "train",
    "lsap-edit": "edit",
    "lsap-eval": "eval",
    "lsap-sncd": "sncd",
    "lsap-demo": "demo",
    "lsap-sweep": "sweep_report",
    "lsap-calibrate": "calibrate",
}


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """``(page, config name, overrides)`` of every lsap command line in the pages' bash blocks
    (``torchrun ... -m lsap.cli.eval`` included). Placeholders become plain values: ``<run>`` ->
    ``X``, ``...`` dropped, ``$var`` from an assignment in the same block; a multirun's swept
    values ``a=x,y`` keep their first value (Hydra's compose takes one job)."""
    import shlex

    found = []
    for page in PAGES:
        for block in re.findall(r"^```bash\n(.*?)^```", page.read_text(), flags=re.S | re.M):
            block = block.replace("\\\n", " ")
            variables = dict(re.findall(r"^(\w+)=\"([^\"]*)\"$", block, flags=re.M))
            for line in block.splitlines():
                line = re.sub(r"(^|\s)#.*", "", line).strip()
                for var, value in variables.items():
                    line = line.replace(f"${var}", value)
                line = re.sub(r"^torchrun .*?-m lsap\.cli\.(\w+)", r"lsap-\1", line)
                words = shlex.split(re.sub(r"<[^>]*>", "X", line)) if line else []
                if not words or words[0] not in COMMANDS:
                    continue
                multirun = bool({"-m", "--multirun"} & set(words))
                overrides = []
                for w in words[1:]:
                    if w in ("...", "-m", "--multirun"):
                        continue
                    key, eq, value = w.partition("=")
                    if multirun and eq and "," in value and value[:1] not in "[{":
                        w = f"{key}={value.split(',')[0]}"
                    overrides.append(w)
                found.append((_rel(page), COMMANDS[words[0]], overrides))
    return found


def test_documented_commands_are_found():
    """The scan sees the command lines of every command page, with their overrides."""
    found = documented_commands()
    assert {name for _, name, _ in found} == set(COMMANDS.values())
    assert ("docs/commands/lsap-invert.md", "invert", ["generator=ffhq", "data.path=photos/",
            "loss.sncd=0"]) in found  # the multirun sweep, first value  # fmt: skip
    assert len(found) >= 30


@pytest.mark.slow
def test_documented_commands_compose():
    """Every documented command line composes its Hydra config (groups, options, keys, ``+``
    for new keys); a command with a misspelt key fails here."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    from lsap.config import config_dir, register_resolvers

    register_resolvers()
    bad = []
    with initialize_config_dir(config_dir(), version_base="1.3"):
        for page, name, overrides in documented_commands():
            try:
                compose(name, overrides=overrides, return_hydra_config=True)
            except Exception as e:  # any composition error is the finding
                bad.append(f"{page}: {name} {' '.join(overrides)}: {str(e).splitlines()[0]}")
        with pytest.raises(ConfigCompositionException):  # the check can fail
            compose("invert", overrides=["loss.sncdd=0.5"])
    assert not bad, "\n".join(bad)


def test_index_lists_every_page():
    """docs/index.md links every page of docs/, so a page another change adds is findable."""
    index = ROOT / "docs" / "index.md"
    linked = {
        (index.parent / t.partition("#")[0]).resolve()
        for t in re.findall(r"\]\(([^)\s#]+)[^)]*\)", _without_code(index.read_text()))
    }
    missing = [
        _rel(p) for p in PAGES if p.parent != ROOT and p != index and p.resolve() not in linked
    ]
    assert not missing, f"docs/index.md does not link {missing}"
