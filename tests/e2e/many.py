"""Several `voxgate` commands in one process: each `python -m voxgate` start imports for ~0.4–1 CPU-s before it
does anything, which a sequence of commands that need no process of their own need pay only once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Runs `voxgate.cli.main` on each argv of a list in turn, in one process, as `python -m voxgate` would
# (SystemExit's code; an uncaught exception is exit 1 with its traceback on stderr), and writes every
# [exit status, stdout, stderr] as JSON to the file named first.
MANY = """
import contextlib, io, json, logging, sys, traceback
from voxgate.cli import main
results = []
for argv in json.loads(sys.argv[2]):
    out, err = io.StringIO(), io.StringIO()
    logging.root.handlers.clear()  # basicConfig binds this command's stderr, not the first command's
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:
            traceback.print_exc()
            code = 1
    results.append([code, out.getvalue(), err.getvalue()])
with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump(results, f)
"""


def run_many(tmp: Path, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run the commands in one process, one after another; their results in order, as subprocess.run's."""
    results = tmp / "results.json"
    process = subprocess.run([sys.executable, "-c", MANY, str(results), json.dumps(commands)], capture_output=True,
                             text=True, timeout=120 * len(commands))
    assert process.returncode == 0, process.stderr
    return [subprocess.CompletedProcess(argv, code, out, err)
            for argv, (code, out, err) in zip(commands, json.loads(results.read_text(encoding="utf-8")), strict=True)]
