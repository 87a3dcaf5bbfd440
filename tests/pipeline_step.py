"""A stand-in command for tests of psmexp.pipeline: `python -m pipeline_step <log file> <word> [fail-unless <file>]`
appends <word> to <log file>, prints it, and exits 3 when `fail-unless <file>` names a file that does not exist."""
import sys
from pathlib import Path

log, word, *rest = sys.argv[1:]
print(f"step says {word}")
if rest[:1] == ["fail-unless"] and not Path(rest[1]).exists():
    print(f"{rest[1]} is missing", file=sys.stderr)
    sys.exit(3)
with open(log, "a") as handle:
    handle.write(word + "\n")
