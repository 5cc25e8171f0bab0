"""``sat terms {build,check,search,show}``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sat.errors import ConfigError


def project_root() -> Path:
    """The project root: the current directory or a parent holding ``knowledge_tree/``."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "knowledge_tree").is_dir():
            return folder
    return Path(__file__).resolve().parents[2]


def default_sources() -> Path:
    """``shared/terms`` beside the project root."""
    return project_root().parent / "shared" / "terms"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``sat terms``."""
    parser = subparsers.add_parser("terms", help="search, show, build and check the knowledge tree")
    sub = parser.add_subparsers(dest="terms_command", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("build", help="compile knowledge_tree/ + terminology sources into the shipped artifact")
    p.add_argument("--sources", type=Path, default=None, help="terminology sources (default: ../shared/terms)")
    p.add_argument("--curated", type=Path, default=None, help="curated folder (default: knowledge_tree/)")
    p.add_argument("--cards", type=Path, default=None, help="dataset cards folder (default: datasets/)")
    p.add_argument("--out", type=Path, default=None, help="output json.gz (default: the shipped artifact)")
    p.set_defaults(func=_build)
    p = sub.add_parser("check", help="validate the curated sources, the artifact and the dataset cards")
    p.add_argument("--sources", type=Path, default=None)
    p.add_argument("--curated", type=Path, default=None)
    p.add_argument("--cards", type=Path, default=None)
    p.add_argument("--artifact", type=Path, default=None)
    p.set_defaults(func=_check)
    p = sub.add_parser("search", help="ranked concepts for a free-text term")
    p.add_argument("text")
    p.add_argument("-k", type=int, default=10, help="number of candidates")
    p.set_defaults(func=_search)
    p = sub.add_parser("show", help="one concept: synonyms, definition, parents, children, codes, datasets")
    p.add_argument("concept", help="a concept id or any term")
    p.set_defaults(func=_show)


def _paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    root = project_root()
    sources = args.sources or default_sources()
    if not sources.is_dir():
        raise ConfigError(f"terminology sources {sources} not found; pass --sources")
    return sources, args.curated or root / "knowledge_tree", args.cards or root / "datasets"


class _Progress:
    """A tqdm bar over the build steps (on stderr)."""

    def __enter__(self):  # noqa: ANN204
        from tqdm import tqdm

        from sat.knowledge.build import BUILD_STEPS

        self.bar = tqdm(total=BUILD_STEPS, unit="step", leave=False)
        self.started = False
        return self

    def __call__(self, name: str) -> None:
        if self.started:
            self.bar.update(1)
        self.started = True
        self.bar.set_description(name)

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def _build(args: argparse.Namespace) -> int:
    from sat.knowledge.build import build
    from sat.knowledge.tree import artifact_path

    sources, curated, cards = _paths(args)
    out = args.out or artifact_path()
    with _Progress() as progress:
        data = build(sources, curated, out=out, cards=cards, progress=progress)
    n_terms = len({t.lower() for c in data["concepts"].values() for t in (c["name"], *c["synonyms"])})
    print(f"wrote {out}: {len(data['concepts'])} concepts, {n_terms} distinct terms, {len(data['cards'])} cards")
    for name, cov in data["coverage"].items():
        print(f"  {name}: {cov['matched']}/{cov['total']} class names matched")
    return 0


def _check(args: argparse.Namespace) -> int:
    from sat.knowledge.check import run_check

    sources, curated, cards = _paths(args)
    with _Progress() as progress:
        report = run_check(sources, curated, cards=cards, artifact=args.artifact, progress=progress)
    print(report.text())
    return 0 if report.ok else 1


def _search(args: argparse.Namespace) -> int:
    from sat.knowledge import load

    for concept, score in load().search(args.text, k=args.k):
        print(f"{score:.3f}  {concept.id:40s} {concept.name}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from sat.knowledge import load

    tree = load()
    c = tree.resolve(args.concept)
    print(f"{c.id}: {c.name}")
    rows = [
        ("synonyms", "; ".join(c.synonyms)),
        ("definition", c.definition),
        ("parents", ", ".join(f"{p} ({r})" for p, r in c.parents)),
        ("children", ", ".join(x.id for x in tree.children(c))),
        ("laterality", f"{c.laterality} (left={c.left_id}, right={c.right_id}, unsided={c.unsided_id})"),
        ("region", c.region),
        ("modalities", ", ".join(c.modalities)),
        ("codes", ", ".join(f"{k}={v}" for k, v in c.xrefs.items())),
        ("datasets", ", ".join(c.datasets)),
        ("lesion", "yes" if c.is_lesion else "no"),
    ]
    for label, value in rows:
        print(f"  {label:11s} {value or '-'}")
    return 0
