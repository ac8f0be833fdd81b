"""``mailroom kb``: the knowledge base of vetted answers the replies are built on."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from streams.models.knowledge import build_index
from streams.settings import Settings

kb_app = typer.Typer(help="The knowledge base of vetted answers.", no_args_is_help=True)
console = Console()


@kb_app.command("index")
def kb_index(
    force: Annotated[bool, typer.Option(help="rebuild even if the index is up to date")] = False,
) -> None:
    """Build the retrieval index of the taxonomy's knowledge base ([kb] source)."""
    settings = Settings()
    taxonomy = settings.taxonomy
    built = build_index(settings.data_dir, taxonomy, force=force)
    if built is None:
        where = taxonomy.path or "the sample taxonomy"
        console.print(f"{where} declares no [kb] source", markup=False)
        raise typer.Exit(1)
    word = f"built in {built.seconds:.1f}s" if built.fresh else "up to date"
    answers = built.index.answers
    languages = sorted({a.language for a in answers})
    console.print(
        f"knowledge base {built.index.id} {word}: {len(answers)} answers "
        f"({', '.join(languages)}) from {taxonomy.kb_source()} -> {built.path}",
        markup=False,  # a path and a language code are a team's text
    )
    if built.index.held_out:
        shares = "  ".join(
            f"{share:.0%} at {built.index.floor_for(share):.3f}" for share in (0.5, 0.6, 0.7, 0.8)
        )
        console.print(
            f"answered tickets that find another ticket's answer, by relevance floor: {shares} "
            f"(now {taxonomy.kb.relevance_floor:.3f})"
        )


@kb_app.command("search")
def kb_search(
    text: Annotated[str, typer.Argument(help="an email's text")],
    limit: Annotated[int, typer.Option(help="how many answers")] = 5,
) -> None:
    """The vetted answers that match a text best, with their relevance."""
    settings = Settings()
    taxonomy = settings.taxonomy
    built = build_index(settings.data_dir, taxonomy)
    if built is None:
        console.print("no [kb] source in the taxonomy", markup=False)
        raise typer.Exit(1)
    floor = taxonomy.kb.relevance_floor
    table = Table("relevance", "usable", "id", "title", title=f"relevance floor {floor:.2f}")
    for hit in built.index.search(text, k=limit):
        usable = "yes" if hit.relevance >= floor else ""
        table.add_row(
            f"{hit.relevance:.3f}", usable, escape(hit.answer.id), escape(hit.answer.title)
        )
    console.print(table)
