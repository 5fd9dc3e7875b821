"""`manage.py score_prompts IN.csv OUT.csv` — complexity score of every prompt in a CSV."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from routing.complexity import get_scorer

PROGRESS_EVERY = 1_000


def allow_huge_fields() -> None:
    """Raise csv's 128 KiB per-field limit: a pasted document in one prompt is a valid row."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:  # C long is 32-bit on some platforms
            limit //= 10


def read_rows(path: Path, required: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Stream a CSV's rows as dicts; CommandError if it cannot be read or lacks a required column."""
    allow_huge_fields()
    try:
        handle = path.open(newline="", encoding="utf-8-sig")  # -sig: spreadsheets often add a BOM
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        try:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [c for c in required if c not in columns]
            if missing:
                raise CommandError(f"{path} has no {', '.join(repr(c) for c in missing)} column (columns: {', '.join(columns) or 'none'})")
            yield from reader
        except csv.Error as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise CommandError(
                f"cannot read {path}: not UTF-8 (byte 0x{exc.object[exc.start]:02x} after line {reader.line_num}); save it as UTF-8"
            ) from exc


class Command(BaseCommand):
    help = "Write a prompt,score CSV (complexity score in [0, 1], higher = needs the premium model) for a CSV with a 'prompt' column."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("input", type=Path, help="CSV with a 'prompt' column (other columns are ignored)")
        parser.add_argument("output", type=Path, help="where to write prompt,score")

    def handle(self, *args: Any, input: Path, output: Path, **options: Any) -> None:
        if output.exists() and input.exists() and output.resolve() == input.resolve():
            raise CommandError(f"{output} is the input file: writing it would destroy the prompts")
        scorer = get_scorer()
        rows = read_rows(input, ("prompt",))
        first = next(rows, None)  # read the header before creating OUT: a bad input leaves no empty file
        started = time.perf_counter()
        count = 0
        # Write a temporary file next to OUT and move it into place at the end: a row that cannot be read half-way
        # (bad bytes, a broken quote) leaves no truncated OUT behind, and an existing OUT untouched.
        # /dev/stdout, a pipe, a symlink: write through it as before (renaming over it would replace the link itself).
        special = output.is_symlink() or (output.exists() and not output.is_file() and not output.is_dir())
        partial = output if special else output.with_name(f".{output.name}.{os.getpid()}.partial")
        try:
            out = partial.open("w", newline="", encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from exc
        try:
            with out:
                writer = csv.writer(out)
                writer.writerow(["prompt", "score"])
                if first is not None:
                    for row in _chain(first, rows):
                        prompt = row.get("prompt") or ""
                        writer.writerow([prompt, f"{scorer.score(prompt):.6f}"])
                        count += 1
                        if count % PROGRESS_EVERY == 0:
                            self.stderr.write(f"scored {count} prompts ({time.perf_counter() - started:.1f} s)")
            try:
                if not special:
                    os.replace(partial, output)
            except OSError as exc:
                raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from exc
        except BaseException:
            if not special:
                partial.unlink(missing_ok=True)
            raise
        elapsed = time.perf_counter() - started
        self.stderr.write(f"scored {count} prompts in {elapsed:.1f} s → {output}")
        self.stdout.write(json.dumps({"input": str(input), "output": str(output), "rows": count, "seconds": round(elapsed, 3)}))


def _chain(first: dict[str, str], rest: Iterator[dict[str, str]]) -> Iterator[dict[str, str]]:
    yield first
    yield from rest
