"""`voxgate lexicon add|rm|list|import|export` as a user runs it: output lines, files, one-line errors (exit 2)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path


def lexicon(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voxgate", "lexicon", *args, "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_add_list_rm_export(tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = lexicon(data, "add", "voxgate", "--phonemes", "/vˈɑksɡeɪt/")
    assert added.returncode == 0 and added.stdout == "voxgate\t/vˈɑksɡeɪt/\t*\t*\n", added.stderr
    assert lexicon(data, "add", "GIF", "--respelling", "jiff", "--language", "en").returncode == 0
    assert lexicon(data, "add", "nginx", "--phonemes", "ˈɛndʒɪn ˈɛks", "--also-respelling", "engine x",
                   "--voice", "hibari:heart").returncode == 0
    assert lexicon(data, "add", r"e\.g\.", "--respelling", "for example", "--regex").returncode == 0
    listed = lexicon(data, "list")
    assert listed.stdout.splitlines() == [
        "GIF\t'jiff'\ten\t*", "nginx\t/ˈɛndʒɪn ˈɛks/ 'engine x'\t*\thibari:heart", "voxgate\t/vˈɑksɡeɪt/\t*\t*",
        "re:e\\.g\\.\t'for example'\t*\t*"]
    assert lexicon(data, "list", "--language", "en").stdout == "GIF\t'jiff'\ten\t*\n"

    out = tmp_path / "lexicon.csv"
    assert lexicon(data, "export", str(out)).stdout == f"exported 4 entries to {out}\n"
    with out.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows[1] == {"word": "nginx", "phonemes": "ˈɛndʒɪn ˈɛks", "respelling": "engine x", "language": "",
                       "voice": "hibari:heart", "regex": ""}
    assert rows[3]["regex"] == "true"
    as_json = tmp_path / "lexicon.json"
    lexicon(data, "export", str(as_json))
    assert json.loads(as_json.read_text(encoding="utf-8"))["entries"][0] == {
        "word": "GIF", "respelling": "jiff", "language": "en"}
    # what export wrote, import reads back unchanged
    other = tmp_path / "other"
    assert lexicon(other, "import", str(out)).stdout == "imported 4 entries\n"
    assert lexicon(other, "list").stdout == listed.stdout

    assert lexicon(data, "rm", "GIF", "--language", "en").stdout == "removed 1 entry\n"
    assert lexicon(data, "rm", r"e\.g\.", "--regex").returncode == 0
    assert "GIF" not in lexicon(data, "list").stdout


def test_import_csv_tsv_and_openedai_yaml(tmp_path: Path) -> None:
    data = tmp_path / "data"
    plain = tmp_path / "words.csv"
    plain.write_text("# word, value\nkubectl,/ˈkuːb kənˈtɹoʊl/\nnginx,engine x,en\n", encoding="utf-8")
    assert lexicon(data, "import", str(plain)).stdout == "imported 2 entries\n"
    tsv = tmp_path / "words.tsv"
    tsv.write_text("word\tphonemes\trespelling\nSQL\t\tsequel\n", encoding="utf-8")
    assert lexicon(data, "import", str(tsv), "--voice", "en_US-joe-medium").returncode == 0
    yaml_file = tmp_path / "pre_process_map.yaml"
    yaml_file.write_text("# regex pairs to clean the text before speaking\n- - ([^.])\\.$\n  - \\1\n"
                         "- - '&amp;'\n  - '&'\n- - ([0-9]+)-([0-9]+)\n  - \\1 to \\2\n", encoding="utf-8")
    assert lexicon(data, "import", str(yaml_file)).stdout == "imported 3 entries\n"
    assert lexicon(data, "list").stdout.splitlines() == [
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
    for args, start in cases:
        result = lexicon(data, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith(start) and result.stderr.count("\n") == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert lexicon(data, "list").stdout == ""  # nothing half-imported
