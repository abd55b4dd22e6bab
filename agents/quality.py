"""A quick signal of whether an agent's output is usable, recorded on the run (not acted on yet).

Each agent declares one check (`Agent.quality_check`):

- python_code (Marcus, Alex): the code parses as Python (`ast.parse`; nothing is executed).
- react_component (Emily): a React component is present. A regex heuristic, not a parser: a
  capitalised `function Name(` or `const Name = (...) =>` / `function` / `React.memo(...)`, or a
  `class Name extends (React.)Component / PureComponent`, in code that also contains JSX
  (`<Tag`, `</Tag>`, `<>` or `/>`). It can be fooled by code that only looks like a component;
  it is meant to catch answers with no component at all (prose, a refusal, a truncated stub).
- dockerfile (Jordan): the Dockerfile has a `FROM [--platform=...] <image> [AS <name>]` line
  (instructions are case-insensitive; a sentence starting with "From" does not count).

"The code" is the first fenced block tagged with the check's language (```python, ```jsx,
```dockerfile ...), else the first fenced block, else the whole output. A block the model did not
close (cut off at max_tokens) runs to the end of the output.

The output comes from a model (or whoever answers in its place), so the checks are linear in its
length and it is bounded: every pattern's variable parts are either runs that cannot hold the
start of another match or bounded to a few hundred characters, so a search tries each position
with a constant amount of work (crafted 60 KB answers took from half a second to over a minute
with the earlier patterns; BENCHMARKS.md). The check runs before, not inside, the transaction that stores the answer.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from agents.models import QualityCheck

# Longer outputs are not checked: no agent answer comes near it (max_tokens), and ast.parse and
# the patterns below, linear as they are, need not spend more on what is not an answer.
MAX_CHECKED_CHARS = 200_000
FENCE_OPEN = re.compile(r"[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)")
LANGUAGES = {
    QualityCheck.PYTHON_CODE: {"python", "py", "python3"},
    QualityCheck.REACT_COMPONENT: {"jsx", "tsx", "javascript", "js", "typescript", "ts", "react"},
    QualityCheck.DOCKERFILE: {"dockerfile", "docker"},
}

# Unbounded runs (whitespace, a name) cannot contain another match's start (a keyword after \b);
# text that could (a type annotation, type parameters, a parameter list) is bounded, and no two
# runs of the same characters follow each other (`\s*(?:x)?\s*` backtracks quadratically).
_NAME = r"([A-Z][A-Za-z0-9_]*)"
_TYPE = r"[^=\n]{0,200}"  # `: React.FC<Props>` up to the `=`
FUNCTION_COMPONENT = re.compile(rf"\bfunction\s+{_NAME}\s*(?:<[^>\n]{{0,200}}>\s*)?\(")
ARROW_COMPONENT = re.compile(
    rf"\b(?:const|let|var)\s+{_NAME}\s*(?::{_TYPE})?=\s*(?:React\.)?(?:(?:memo|forwardRef)\(\s*)?"
    rf"(?:async\s+)?(?:function\b|\([^()]{{0,500}}\)\s*(?::{_TYPE})?=>|[A-Za-z_$][\w$]*\s*=>)"
)
CLASS_COMPONENT = re.compile(rf"\bclass\s+{_NAME}\s+extends\s+(?:React\.)?(?:Pure)?Component\b")
JSX = re.compile(r"<[A-Za-z][\w.:-]*[\s/>]|</[A-Za-z][\w.:-]*>|<>|/>")
# FROM [--platform=...] image [AS name], alone on its line: "From the official image, ..." is prose.
FROM_LINE = re.compile(
    r"^[ \t]*FROM[ \t]+(?:--platform=\S+[ \t]+)?([\w.\-/:@${}]+)(?:[ \t]+AS[ \t]+[\w.-]+)?[ \t]*\r?$", re.I | re.M
)


@dataclass(frozen=True)
class QualityResult:
    ok: bool | None  # None: the agent declares no check
    detail: str


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """The fenced blocks as (language, body), in one pass over the lines. A block closes at a line
    holding its own fence alone; one never closed runs to the end of the output."""
    blocks: list[tuple[str, str]] = []
    fence, language, body = "", "", []
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if fence and line.strip(" \t\r") == fence:
            blocks.append((language, "".join(body)))
            fence = ""
        elif fence:
            body.append(line if index == len(lines) - 1 else line + "\n")
        elif index < len(lines) - 1 and (opening := FENCE_OPEN.match(line)):  # a fence ends its line
            fence, language, body = opening.group(1), opening.group(2).lower(), []
    if fence:
        blocks.append((language, "".join(body)))
    return blocks


def code_block(text: str, languages: set[str] = frozenset()) -> tuple[str, bool]:
    """The code to check and whether it came from a fenced block."""
    blocks = fenced_blocks(text)
    for language, body in blocks:
        if language in languages:
            return body, True
    if blocks:
        return blocks[0][1], True
    return text, False


def _where(fenced: bool) -> str:
    return "the code block" if fenced else "the output (no code block)"


def check_python(text: str) -> QualityResult:
    code, fenced = code_block(text, LANGUAGES[QualityCheck.PYTHON_CODE])
    if not code.strip():
        return QualityResult(False, f"{_where(fenced)} is empty")
    try:
        ast.parse(code)
    except SyntaxError as error:
        return QualityResult(False, f"{_where(fenced)} is not valid Python: {error.msg} (line {error.lineno})")
    except (ValueError, RecursionError, MemoryError) as error:
        return QualityResult(False, f"{_where(fenced)} is not valid Python: {type(error).__name__}")
    lines = len(code.strip().splitlines())
    return QualityResult(True, f"{_where(fenced)} parses as Python ({lines} lines)")


def check_react(text: str) -> QualityResult:
    code, fenced = code_block(text, LANGUAGES[QualityCheck.REACT_COMPONENT])
    if not JSX.search(code):
        return QualityResult(False, f"no JSX in {_where(fenced)}")
    for kind, pattern in (("class", CLASS_COMPONENT), ("function", FUNCTION_COMPONENT), ("arrow", ARROW_COMPONENT)):
        match = pattern.search(code)
        if match:
            return QualityResult(True, f"React component {match.group(1)} ({kind}) in {_where(fenced)}")
    return QualityResult(False, f"no React component (capitalised function or class) in {_where(fenced)}")


def check_dockerfile(text: str) -> QualityResult:
    code, fenced = code_block(text, LANGUAGES[QualityCheck.DOCKERFILE])
    match = FROM_LINE.search(code)
    if match is None:
        return QualityResult(False, f"no FROM line in {_where(fenced)}")
    return QualityResult(True, f"FROM {match.group(1)[:200]}")


CHECKS = {
    QualityCheck.PYTHON_CODE: check_python,
    QualityCheck.REACT_COMPONENT: check_react,
    QualityCheck.DOCKERFILE: check_dockerfile,
}


# How an answer that passes the check begins: an open fence in the language the agent's prompt asks for.
# A base model is handed it as the start of its answer (routing.router.RouteRequest.answer_start).
ANSWER_STARTS = {
    QualityCheck.PYTHON_CODE: "```python\n",
    QualityCheck.REACT_COMPONENT: "```tsx\n",
    QualityCheck.DOCKERFILE: "```dockerfile\n",
}


def answer_start(check: str) -> str:
    return ANSWER_STARTS.get(check, "")


def check_output(check: str, text: str) -> QualityResult:
    """Run the agent's declared check on its output."""
    function = CHECKS.get(check)
    if function is None:
        return QualityResult(None, "")
    if len(text) > MAX_CHECKED_CHARS:
        return QualityResult(False, f"not checked: the output is {len(text):,} characters, over {MAX_CHECKED_CHARS:,}")
    return function(text)
