"""The agents' quality check on crafted 60 KB answers: the check before (commit dcaaf43) and now.

    .venv/bin/python bench/bench_quality.py [--size 60000] [--repeat 3]   # about 3 minutes

Each input is built to make a backtracking regex rescan the rest of a line (or a run of
whitespace) from many starting points. The old check is agents/quality.py as of dcaaf43, read
with `git show` (so run it in a git checkout); the new one is the working tree's. Prints, in
seconds, one timing of the old check (it takes up to minutes) and the best of `--repeat` of the
new one per input. No database is used.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BASELINE = "dcaaf43"
JSX = "<div/>\n"  # the React check only looks for components in code that has JSX


def crafted(size: int) -> dict[str, str]:
    def fill(unit: str, head: str = JSX) -> str:
        return head + unit * ((size - len(head)) // len(unit))

    return {
        "var A: (type annotation never closed by '=', one line)": fill("var A:"),
        "function A< (type parameters never closed, one line)": fill("function A<"),
        "function A + whitespace": JSX + "function A" + " " * (size - len(JSX) - 10),
        "const A = + whitespace": JSX + "const A =" + " " * (size - len(JSX) - 9),
        "backticks, no newline": "`" * size,
    }


def load_old_check() -> Callable[[str, str], object]:
    source = subprocess.run(
        ["git", "show", f"{BASELINE}:agents/quality.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    module = types.ModuleType("quality_at_dcaaf43")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, "quality_at_dcaaf43.py", "exec"), module.__dict__)  # noqa: S102 - our own file at a commit
    return module.check_output


def best_of(repeat: int, check: Callable[[str, str], object], text: str) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        check("react_component", text)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("SWITCHYARD_VAR_DIR", tempfile.mkdtemp())
    import django

    django.setup()
    from agents.quality import check_output as new_check

    old_check = load_old_check()
    print(f"react_component check, {args.size:,}-character crafted answers; new: best of {args.repeat}")
    print(f"{'input':58} {'old (s)':>9} {'new (s)':>9}")
    for name, text in crafted(args.size).items():
        old = best_of(1, old_check, text)
        new = best_of(args.repeat, new_check, text)
        print(f"{name:58} {old:9.3f} {new:9.3f}")


if __name__ == "__main__":
    main()
