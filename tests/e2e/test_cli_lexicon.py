"""`voxgate lexicon add|rm|list|import|export` as a user runs it: output lines, files, one-line errors (exit 2).

Each test runs its commands in order in one process (tests/e2e/many.py: the same exit status, stdout and
stderr as a process each; ~0.4 CPU-s of start-up each saved), then checks each result; the first command of
the file runs as its own `python -m voxgate` process, as a user runs it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.many import run_many


def lexicon(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voxgate", "lexicon", *args, "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=60, check=False)


def cmd(data: Path, *args: str) -> list[str]:
    """One lexicon command's argv, for run_many."""
    return ["lexicon", *args, "--data-dir", str(data)]


def test_add_list_rm_export(tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = lexicon(data, "add", "voxgate", "--phonemes", "/vˈɑksɡeɪt/")
    assert added.returncode == 0 and added.stdout == "voxgate\t/vˈɑksɡeɪt/\t*\t*\n", added.stderr
    out, as_json, other = tmp_path / "lexicon.csv", tmp_path / "lexicon.json", tmp_path / "other"
    (gif, nginx, regex, listed, english, exported, _, imported, other_listed, removed, regex_removed,
     after) = run_many(
        tmp_path,
        cmd(data, "add", "GIF", "--respelling", "jiff", "--language", "en"),
        cmd(data, "add", "nginx", "--phonemes", "ˈɛndʒɪn ˈɛks", "--also-respelling", "engine x",
            "--voice", "hibari:heart"),
        cmd(data, "add", r"e\.g\.", "--respelling", "for example", "--regex"),
        cmd(data, "list"),
        cmd(data, "list", "--language", "en"),
        cmd(data, "export", str(out)),
        cmd(data, "export", str(as_json)),
        cmd(other, "import", str(out)),  # what export wrote, import reads back unchanged
        cmd(other, "list"),
        cmd(data, "rm", "GIF", "--language", "en"),
        cmd(data, "rm", r"e\.g\.", "--regex"),
        cmd(data, "list"))
    assert gif.returncode == 0 and nginx.returncode == 0 and regex.returncode == 0
    assert listed.stdout.splitlines() == [
        "GIF\t'jiff'\ten\t*", "nginx\t/ˈɛndʒɪn ˈɛks/ 'engine x'\t*\thibari:heart", "voxgate\t/vˈɑksɡeɪt/\t*\t*",
        "re:e\\.g\\.\t'for example'\t*\t*"]
    assert english.stdout == "GIF\t'jiff'\ten\t*\n"

    assert exported.stdout == f"exported 4 entries to {out}\n"
    with out.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows[1] == {"word": "nginx", "phonemes": "ˈɛndʒɪn ˈɛks", "respelling": "engine x", "language": "",
                       "voice": "hibari:heart", "regex": ""}
    assert rows[3]["regex"] == "true"
    assert json.loads(as_json.read_text(encoding="utf-8"))["entries"][0] == {
        "word": "GIF", "respelling": "jiff", "language": "en"}
    assert imported.stdout == "imported 4 entries\n"
    assert other_listed.stdout == listed.stdout

    assert removed.stdout == "removed 1 entry\n"
    assert regex_removed.returncode == 0
    assert "GIF" not in after.stdout


def test_import_csv_tsv_and_openedai_yaml(tmp_path: Path) -> None:
    data = tmp_path / "data"
    plain = tmp_path / "words.csv"
    plain.write_text("# word, value\nkubectl,/ˈkuːb kənˈtɹoʊl/\nnginx,engine x,en\n", encoding="utf-8")
    tsv = tmp_path / "words.tsv"
    tsv.write_text("word\tphonemes\trespelling\nSQL\t\tsequel\n", encoding="utf-8")
    yaml_file = tmp_path / "pre_process_map.yaml"
    yaml_file.write_text("# regex pairs to clean the text before speaking\n- - ([^.])\\.$\n  - \\1\n"
                         "- - '&amp;'\n  - '&'\n- - ([0-9]+)-([0-9]+)\n  - \\1 to \\2\n", encoding="utf-8")
    from_csv, from_tsv, from_yaml, listed = run_many(
        tmp_path,
        cmd(data, "import", str(plain)),
        cmd(data, "import", str(tsv), "--voice", "en_US-joe-medium"),
        cmd(data, "import", str(yaml_file)),
        cmd(data, "list"))
    assert from_csv.stdout == "imported 2 entries\n"
    assert from_tsv.returncode == 0
    assert from_yaml.stdout == "imported 3 entries\n"
    assert listed.stdout.splitlines() == [
        "kubectl\t/ˈkuːb kənˈtɹoʊl/\t*\t*", "nginx\t'engine x'\ten\t*", "SQL\t'sequel'\t*\ten_US-joe-medium",
        "re:([^.])\\.$\t'\\\\1'\t*\t*", "re:&amp;\t'&'\t*\t*", "re:([0-9]+)-([0-9]+)\t'\\\\1 to \\\\2'\t*\t*"]


def test_user_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bad = tmp_path / "bad.csv"
    bad.write_text("fine,ok\nbroken\n", encoding="utf-8")
    slow = tmp_path / "slow.yaml"
    slow.write_text("- - (a+)+$\n  - x\n", encoding="utf-8")
    not_yaml = tmp_path / "x.yaml"
    not_yaml.write_text("- [unclosed\n", encoding="utf-8")
    cases = [
        (("add", "x", "--phonemes", "<b>"), "voxgate: phonemes for 'x' hold '<' (U+003C), which is not IPA"),
        (("add", "x"), "voxgate: give --phonemes (IPA) or --respelling"),
        (("add", "(", "--respelling", "x", "--regex"), "voxgate: regex '(' is not valid"),
        (("import", str(bad)), f"voxgate: {bad}, line 2: expected a word and a value"),
        (("import", str(slow)), f"voxgate: {slow}, pair 1: regex '(a+)+$' takes too long"),
        (("import", str(not_yaml)), f"voxgate: {not_yaml}, not valid YAML at line 2"),
        (("import", str(tmp_path / "none.csv")), "voxgate: no such file"),
        (("rm", "nothing"), "voxgate: no lexicon entry for 'nothing'"),
        (("export", str(tmp_path / "no" / "x.csv")), "voxgate: folder"),
    ]
    *results, listed = run_many(tmp_path, *(cmd(data, *args) for args, _ in cases), cmd(data, "list"))
    for (args, start), result in zip(cases, results, strict=True):
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith(start) and result.stderr.count("\n") == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert listed.stdout == ""  # nothing half-imported
