"""`voxgate lexicon add|rm|list|import|export`: the pronunciation lexicon in the data folder, without a server.

A running server sees the changes within a second (it checks the database's change counter).
Import reads CSV or TSV (`word,phonemes,respelling,language,voice,regex` with a header, or `word,value`
rows where a value between slashes is IPA) and openedai-speech's `pre_process_map.yaml` (regex pairs).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from voxgate.errors import InvalidInput
from voxgate.settings import Settings

MAX_FILE = 4 * 2**20  # bytes of an import file
FIELDS = ("word", "phonemes", "respelling", "language", "voice", "regex")


def add_parsers(lexicon: argparse.ArgumentParser, settings_flags: Any) -> None:
    """The lexicon sub-subcommands (each takes the settings flags too); with none, `lexicon` lists."""
    sub = lexicon.add_subparsers(dest="action")
    listing = sub.add_parser("list", help="list the entries (the default)")
    listing.add_argument("--language", help="only entries of this language tag")
    listing.add_argument("--voice", help="only entries of this voice")
    add = sub.add_parser("add", help="add or replace an entry")
    add.add_argument("word", help="the word (or words) as written; lower case matches any casing")
    how = add.add_mutually_exclusive_group()
    how.add_argument("--phonemes", help="IPA, e.g. vˈɑksɡeɪt (engines that take phonemes)")
    how.add_argument("--respelling", help="text read instead of the word (every engine)")
    add.add_argument("--also-respelling", dest="also", help="a respelling too, for engines without phoneme input")
    add.add_argument("--language", help="only for this language (en, en-GB…)")
    add.add_argument("--voice", help="only for this voice id")
    add.add_argument("--regex", action="store_true", help="WORD is a regular expression, --respelling its replacement")
    rm = sub.add_parser("rm", help="remove an entry")
    rm.add_argument("word")
    rm.add_argument("--language")
    rm.add_argument("--voice")
    rm.add_argument("--regex", action="store_true", help="WORD is a regex entry's pattern")
    rm.add_argument("--all", action="store_true", help="every entry of WORD, whatever its language and voice")
    imp = sub.add_parser("import", help="add the entries of a CSV, TSV or openedai-speech YAML file")
    imp.add_argument("file", type=Path)
    imp.add_argument("--format", choices=("csv", "tsv", "yaml"), help="default: from the file name")
    imp.add_argument("--language", help="language of entries that name none")
    imp.add_argument("--voice", help="voice of entries that name none")
    export = sub.add_parser("export", help="write every entry to a CSV, TSV or JSON file ('-': TSV on stdout)")
    export.add_argument("file", help="output file (.csv, .tsv or .json) or -")
    for parser in sub.choices.values():
        settings_flags(parser)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Carry out one lexicon action on the data folder's store."""
    from voxgate.text.lexicon import Entry, Lexicon
    from voxgate.voices.lexicon_store import lexicon_store
    from voxgate.voices.store_base import StoreError, open_store

    action = args.action or "list"
    if action == "import":
        entries = read_entries(args.file, args.format, args.language, args.voice)  # before the store opens
    try:
        store = open_store(settings.store, settings.data_dir)
    except StoreError as exc:
        print(f"voxgate: {exc}", file=sys.stderr)
        return 2
    try:
        lexicon = Lexicon(lexicon_store(store))
        if action == "list":
            for entry in lexicon.list(language=getattr(args, "language", None), voice=getattr(args, "voice", None)):
                print(_line(entry))
        elif action == "add":
            if not args.phonemes and args.respelling is None:
                raise InvalidInput("give --phonemes (IPA) or --respelling")
            entry = Entry.parse({"word": args.word, "phonemes": args.phonemes,
                                 "respelling": args.respelling if args.respelling is not None else args.also,
                                 "language": args.language, "voice": args.voice, "regex": args.regex})
            lexicon.put([entry])
            print(_line(entry))
        elif action == "rm":
            count = lexicon.delete(args.word, args.language, args.voice, every=args.all, regex=args.regex)
            if not count:
                print(f"voxgate: no lexicon entry for {args.word!r}", file=sys.stderr)
                return 2
            print(f"removed {count} entr{'y' if count == 1 else 'ies'}")
        elif action == "import":
            lexicon.put(entries)
            print(f"imported {len(entries)} entries")
        else:
            return _export(lexicon.list(), args.file)
    finally:
        store.close()
    return 0


def _line(entry: Any) -> str:
    value = f"/{entry.phonemes}/" if entry.phonemes else ""
    if entry.respelling is not None:
        value = f"{value} {entry.respelling!r}".strip() if value else repr(entry.respelling)
    scope = "\t".join((entry.language or "*", entry.voice or "*"))
    return f"{'re:' if entry.regex else ''}{entry.word}\t{value}\t{scope}"


def _export(entries: list[Any], target: str) -> int:
    if target == "-":
        _write_csv(entries, sys.stdout, "\t")
        return 0
    path = Path(target)
    if not path.parent.is_dir():
        raise InvalidInput(f"folder {path.parent} does not exist")
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps({"entries": [e.to_dict() for e in entries]}, ensure_ascii=False, indent=1) + "\n",
                        encoding="utf-8")
    else:
        with path.open("w", encoding="utf-8", newline="") as out:
            _write_csv(entries, out, "\t" if path.suffix.lower() == ".tsv" else ",")
    print(f"exported {len(entries)} entries to {path}")
    return 0


def _write_csv(entries: list[Any], out: Any, delimiter: str) -> None:
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(FIELDS)
    for e in entries:
        writer.writerow([e.word, e.phonemes or "", e.respelling or "", e.language or "", e.voice or "",
                         "true" if e.regex else ""])


def read_entries(path: Path, fmt: str | None, language: str | None, voice: str | None) -> list[Any]:
    """Parse an import file into entries; InvalidInput names the file and line of the first problem."""
    if not path.is_file():
        raise InvalidInput(f"no such file: {path}")
    if path.stat().st_size > MAX_FILE:
        raise InvalidInput(f"{path} is larger than {MAX_FILE // 2**20} MB")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text") from None
    fmt = fmt or {".yaml": "yaml", ".yml": "yaml", ".tsv": "tsv", ".tab": "tsv"}.get(path.suffix.lower())
    if fmt is None:
        fmt = "tsv" if "\t" in text.split("\n", 1)[0] else "csv"
    try:
        rows = _yaml_rows(text, path) if fmt == "yaml" else _csv_rows(text, "\t" if fmt == "tsv" else ",")
    except InvalidInput as exc:
        raise InvalidInput(f"{path}, {exc.message}") from None
    from voxgate.text.lexicon import Entry

    entries = []
    for where, row in rows:
        row.setdefault("language", language)
        row.setdefault("voice", voice)
        try:
            entries.append(Entry.parse({k: v for k, v in row.items() if v is not None}))
        except InvalidInput as exc:
            raise InvalidInput(f"{path}, {where}: {exc.message}") from None
    if not entries:
        raise InvalidInput(f"{path} has no entries")
    return entries


def _csv_rows(text: str, delimiter: str) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows, header = [], None
    for number, cells in enumerate(reader, 1):
        cells = [c.strip() for c in cells]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if header is None and number == reader.line_num and cells[0].lower() == "word":
            header = [c.lower() for c in cells]
            unknown = set(header) - set(FIELDS)
            if unknown:
                raise InvalidInput(f"line {number}: unknown column {sorted(unknown)[0]!r}; columns are "
                                   f"{', '.join(FIELDS)}")
            continue
        if header is not None:
            row: dict[str, Any] = {k: (v or None) for k, v in zip(header, cells, strict=False)}
            row["regex"] = str(row.get("regex") or "").lower() in ("1", "true", "yes")
        else:
            if len(cells) < 2:
                raise InvalidInput(f"line {number}: expected a word and a value (IPA between slashes, or "
                                   f"a respelling) separated by {'a tab' if delimiter == chr(9) else 'a comma'}")
            value = cells[1]
            is_ipa = len(value) > 2 and value.startswith("/") and value.endswith("/")
            row = {"word": cells[0], "phonemes" if is_ipa else "respelling": value[1:-1] if is_ipa else value,
                   "language": cells[2] if len(cells) > 2 and cells[2] else None,
                   "voice": cells[3] if len(cells) > 3 and cells[3] else None}
        rows.append((f"line {number}", row))
    return rows


def _yaml_rows(text: str, path: Path) -> list[tuple[str, dict[str, Any]]]:
    """openedai-speech's pre_process_map.yaml: a list of [pattern, replacement] pairs, applied in order."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InvalidInput(f"not valid YAML{where}") from None
    if not isinstance(data, list):
        raise InvalidInput("expected a list of [pattern, replacement] pairs")
    rows = []
    for i, pair in enumerate(data, 1):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise InvalidInput(f"pair {i} is not [pattern, replacement] (two strings)")
        rows.append((f"pair {i}", {"word": pair[0], "respelling": pair[1], "regex": True}))
    return rows


__all__ = ["add_parsers", "read_entries", "run"]
