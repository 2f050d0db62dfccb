"""Bad input becomes one line on stderr that names the field and the allowed values, and exit code 2."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape

stderr = Console(stderr=True)

EXIT_BAD_INPUT = 2


def describe_validation_error(error: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per problem: `field: message (got value)`; unknown fields list the allowed ones."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "config"
        if item["type"] == "extra_forbidden":
            allowed = (
                f"; allowed: {', '.join(model.model_fields)}" if model is not None and len(item["loc"]) == 1 else ""
            )
            lines.append(f"{where}: unknown field{allowed}")
        else:
            lines.append(f"{where}: {item['msg']} (got {item.get('input')!r})")
    return "; ".join(lines)


@contextlib.contextmanager
def bad_input_exits() -> Iterator[None]:
    """Turn ValueError, TypeError and pydantic's ValidationError into `error: ...` and exit code 2."""
    try:
        yield
    except ValidationError as error:
        model = error.title if isinstance(error.title, type) else None
        stderr.print(
            f"[red]error:[/red] {escape(describe_validation_error(error, model))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as error:
        stderr.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
