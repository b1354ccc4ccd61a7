"""``python -m expconf.docs build|check``: the config reference and the static docs site.

``build`` regenerates ``docs/reference.md`` from the dataclasses (every field: type, default,
help text) and renders every ``docs/*.md`` page into ``site/`` with the ``markdown`` package,
offline. ``check`` (run by ``make test``) writes nothing and fails when the reference is stale,
a field has no help text, a page fails to render, or a page links to a missing page. Pages that
other parts of the project add later are picked up as they appear.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import re
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
REFERENCE = "reference.md"

#: Navigation order; any other page is listed after these, alphabetically.
NAV = [
    "index.md",
    "getting-started.md",
    "concepts.md",
    "reference.md",
    "recipes.md",
    "migration.md",
    "run-dir-checkpoints-resume.md",
    "s3.md",
    "fault-tolerance.md",
    "distributed.md",
    "security.md",
    "benchmarks.md",
]
#: Pages written by other parts of the project: a link to one of them may dangle until it lands.
PENDING_OK = {"run-dir-checkpoints-resume.md", "s3.md", "fault-tolerance.md", "distributed.md", "benchmarks.md"}


# -- the reference --------------------------------------------------------------------------------
def type_name(tp: Any) -> str:
    """A readable annotation: ``Optional[list[str]]`` -> ``list[str] | null``."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = typing.get_args(tp)
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is not None:
        inner = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return "(section)"
    else:
        return "required"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value!r}`".replace("|", "\\|") if not isinstance(value, str) else f"`{value}`"


def _rows(cls: type, prefix: str, sections: list[tuple[str, type]]) -> list[str]:
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        tp = hints[f.name]
        help_text = str(f.metadata.get("help", "")).replace("|", "\\|")
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            sections.append((f"{prefix}{f.name}", tp))
            rows.append(f"| `{prefix}{f.name}` | section | see below | {help_text} |")
            continue
        rows.append(f"| `{prefix}{f.name}` | `{type_name(tp)}` | {_default(f)} | {help_text} |")
    return rows


def missing_help() -> list[str]:
    """Config keys whose field has no help text."""
    from expconf.config.root import RootConfig

    out: list[str] = []
    todo: list[tuple[str, type]] = [("", RootConfig)]
    while todo:
        prefix, cls = todo.pop()
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if not f.metadata.get("help"):
                out.append(f"{prefix}{f.name}")
            if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name]):
                todo.append((f"{prefix}{f.name}.", hints[f.name]))
    return out


def group_options() -> dict[str, list[str]]:
    """The config group options shipped with expconf (ConfigStore and conf/)."""
    from importlib import resources

    from hydra.core.config_store import ConfigStore

    from expconf.config.store import register_all

    register_all()
    groups: dict[str, set[str]] = {}
    for group in ("trainer", "model"):
        groups.setdefault(group, set()).update(n.removesuffix(".yaml") for n in ConfigStore.instance().list(group))
    conf = resources.files("expconf.conf")
    for folder in conf.iterdir():
        if folder.is_dir() and not folder.name.startswith("_"):
            names = {p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")}
            if names:
                groups.setdefault(folder.name, set()).update(names)
    return {g: sorted(v) for g, v in sorted(groups.items())}


def reference() -> str:
    """The Markdown of ``docs/reference.md``, generated from the dataclasses."""
    from expconf.config.root import RootConfig

    out = [
        "# Config reference",
        "",
        "<!-- Generated by `python -m expconf.docs build` from the dataclasses in expconf/config/;",
        "     do not edit by hand: `make test` fails when this page is stale. -->",
        "",
        "Every key of the config tree with its type, default and help text. Set any of them on the",
        "command line (`log.ckpt.save_top_k=5`) or in a YAML file. `null` is Python's `None`.",
        "Where a recipe (`+recipe=gpt`) sets a different value, the recipe's value is what you get;",
        "print the composed tree with `python -m expconf.train +recipe=gpt --cfg job`.",
        "",
        "## Group options",
        "",
        "| group | options | how to pick one |",
        "|---|---|---|",
    ]
    for group, names in group_options().items():
        how = f"`+{group}=NAME`"
        out.append(f"| `{group}` | {', '.join(f'`{n}`' for n in names)} | {how} |")
    sections: list[tuple[str, type]] = []
    out += ["", "## Root", "", "| key | type | default | help |", "|---|---|---|---|"]
    out += _rows(RootConfig, "", sections)
    while sections:
        key, cls = sections.pop(0)
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        out += ["", f"## `{key}`", "", f"{doc} (`{cls.__module__}.{cls.__qualname__}`)", ""]
        out += ["| key | type | default | help |", "|---|---|---|---|"]
        out += _rows(cls, f"{key}.", sections)
    out += [
        "",
        "## Environment variables",
        "",
        "| variable | effect |",
        "|---|---|",
        "| `EXPCONF_DEBUG=1` | show the full traceback of a configuration error (exit code 1) "
        "instead of the one `error:` line (exit code 2) |",
        "| `HYDRA_FULL_ERROR` | left as you set it; expconf sets it to 1 otherwise so it can word Hydra's errors |",
        "| `EXPCONF_ALLOWED_TARGETS` | comma-separated class paths or patterns (`my_pkg.models.*`) "
        "that `_target_` may name, on top of expconf's own |",
        "| `EXPCONF_CONFIG_MODULES` | comma-separated modules `python -m expconf.train` imports before "
        "composing, so they can register their own dataclasses with `expconf.config.store.store()` |",
        "",
    ]
    return "\n".join(out)


# -- the site -------------------------------------------------------------------------------------
def pages(docs: Path | None = None) -> list[Path]:
    """Every page, in navigation order."""
    docs = docs or DOCS
    found = {p.name: p for p in docs.glob("*.md")}
    ordered = [found[n] for n in NAV if n in found]
    return ordered + sorted(p for n, p in found.items() if n not in NAV)


def _title(text: str, fallback: str) -> str:
    m = re.search(r"^#\s+(.+)$", text, re.M)
    return m.group(1).strip().strip("`") if m else fallback


def broken_links(docs: Path | None = None) -> list[str]:
    """``page: target`` for every relative link to a page that does not exist (pending pages excepted)."""
    docs = docs or DOCS
    names = {p.name for p in docs.glob("*.md")}
    out = []
    for page in docs.glob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            name = Path(target).name
            if name not in names and name not in PENDING_OK:
                out.append(f"{page.name}: {target}")
    return sorted(out)


def build_site(out: Path, docs: Path | None = None) -> list[Path]:
    """Render every page to ``out/NAME.html``; returns the files written."""
    docs = docs or DOCS
    import markdown

    all_pages = pages(docs)
    titles = {p.name: _title(p.read_text(), p.stem) for p in all_pages}
    nav = "".join(f'<li><a href="{p.stem}.html">{html.escape(titles[p.name])}</a></li>' for p in all_pages)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for page in all_pages:
        md = markdown.Markdown(extensions=["tables", "fenced_code", "toc"])
        body = md.convert(page.read_text())
        body = re.sub(r'href="([^":]+)\.md(#[^"]*)?"', r'href="\1.html\2"', body)
        doc = (
            "<!doctype html>\n<html><head><meta charset='utf-8'>"
            f"<title>{html.escape(titles[page.name])} - expconf</title>"
            "<style>body{font-family:sans-serif;max-width:60rem;margin:auto;display:flex;gap:2rem}"
            "nav{min-width:12rem}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
            "pre{background:#f4f4f4;padding:8px;overflow:auto}</style></head>"
            f"<body><nav><ul>{nav}</ul></nav><main>{body}</main></body></html>\n"
        )
        target = out / f"{page.stem}.html"
        target.write_text(doc)
        written.append(target)
    return written


def check(docs: Path | None = None) -> list[str]:
    """Problems that make ``make docs-check`` fail (empty list: all good)."""
    docs = docs or DOCS
    problems = []
    ref = docs / REFERENCE
    if not ref.is_file() or ref.read_text() != reference():
        problems.append(f"{ref} is stale: run `make docs` (python -m expconf.docs build) and commit it")
    problems += [f"config key without help text: {k} (add help with doc(default, help))" for k in missing_help()]
    problems += [f"broken link in {b}" for b in broken_links(docs)]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            build_site(Path(tmp), docs)
        except Exception as e:  # any failure to render is a broken build
            problems.append(f"the site does not build: {type(e).__name__}: {e}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m expconf.docs``."""
    parser = argparse.ArgumentParser(prog="python -m expconf.docs", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "check"])
    parser.add_argument("--out", default=str(REPO / "site"), help="where build writes the HTML (default: site/)")
    args = parser.parse_args(argv)
    if args.command == "build":
        (DOCS / REFERENCE).write_text(reference())
        written = build_site(Path(args.out), DOCS)
        print(f"wrote {DOCS / REFERENCE} and {len(written)} pages to {args.out}")
        return 0
    problems = check(DOCS)
    for p in problems:
        print(f"docs-check: {p}", file=sys.stderr)
    if not problems:
        print(f"docs-check: ok ({len(pages(DOCS))} pages, reference up to date)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
