"""The quality check on answers crafted to make it slow: bounded input, linear time, outside the transaction.

Issue 10 item 5: a crafted 60 KB answer kept the React check (a backtracking regex) busy for
25-38 s inside the transaction that stores the run's result, stalling the next run. Timings
here are loose on purpose (a loaded 2-core machine): the old check took 0.8 s to minutes on
these inputs; bench/bench_quality.py has the figures.
"""

from __future__ import annotations

import time

import pytest
from django.db import connection

from agents import execution, quality
from agents.models import AgentRun, QualityCheck, RunStatus
from tests.factories import run_create
from tests.routing.conftest_router import fresh_routing, make_provider

__all__ = ["fresh_routing"]  # a fixture, used below

JSX = "<div/>\n"


def crafted(kind: str, size: int) -> str:
    """Inputs that made the old patterns rescan a line (or a run of whitespace) from many starts."""

    def fill(unit: str) -> str:
        return JSX + unit * ((size - len(JSX)) // len(unit))

    return {
        "unclosed type annotations": fill("var A:"),
        "unclosed type parameters": fill("function A<"),
        "whitespace after a function name": JSX + "function A" + " " * size,
        "whitespace after an assignment": JSX + "const A =" + " " * size,
        "backticks without a newline": "`" * size,
    }[kind][:size]


def seconds(text: str, check: str = QualityCheck.REACT_COMPONENT) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        quality.check_output(check, text)
        best = min(best, time.perf_counter() - started)
    return best


KINDS = [
    "unclosed type annotations",
    "unclosed type parameters",
    "whitespace after a function name",
    "whitespace after an assignment",
    "backticks without a newline",
]


@pytest.mark.parametrize("kind", KINDS)
def test_a_crafted_60_kb_answer_is_checked_in_a_blink(kind) -> None:
    assert seconds(crafted(kind, 60_000)) < 0.5  # the old check: 0.8 s to 119 s


@pytest.mark.parametrize("kind", KINDS)
def test_four_times_the_input_takes_about_four_times_as_long_not_sixteen(kind) -> None:
    small, large = seconds(crafted(kind, 15_000)), seconds(crafted(kind, 60_000))

    # Linear: ~4x. Quadratic: ~16x. Below 50 ms the ratio is mostly noise, and nothing to fear.
    assert large < max(8 * small, 0.05), (small, large)


@pytest.mark.parametrize("check", [QualityCheck.PYTHON_CODE, QualityCheck.REACT_COMPONENT, QualityCheck.DOCKERFILE])
def test_an_answer_over_the_bound_is_not_checked_and_says_so(check) -> None:
    text = "x" * (quality.MAX_CHECKED_CHARS + 1)

    result = quality.check_output(check, text)

    assert (result.ok, result.detail) == (False, "not checked: the output is 200,001 characters, over 200,000")


def test_a_component_after_a_long_crafted_stretch_is_still_found() -> None:
    component = "\nexport const Card = ({ title }: Props) => <h2>{title}</h2>;\n"
    text = crafted("unclosed type annotations", 60_000) + component

    assert quality.check_output(QualityCheck.REACT_COMPONENT, text).ok is True


@pytest.mark.django_db(transaction=True)  # no test transaction around the run: the check must see none of its own
def test_the_check_runs_before_and_outside_the_transaction_that_stores_the_result(
    fresh_routing, fake_openai, agents, user, monkeypatch
) -> None:
    fake_openai.reply = "```tsx\nexport function Card() {\n  return <div />;\n}\n```"
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini")
    run = run_create(agent=agents["emily"], user=user, prompt="A card component.")
    seen: list[bool] = []
    real_check = quality.check_output

    def watched(check: str, text: str) -> quality.QualityResult:
        seen.append(connection.in_atomic_block)
        return real_check(check, text)

    monkeypatch.setattr(quality, "check_output", watched)

    assert execution.run_execute(run_id=run.pk).outcome == "succeeded"

    assert seen == [False]
    run = AgentRun.objects.get(pk=run.pk)
    assert (run.status, run.quality_ok, run.quality_detail) == (
        RunStatus.SUCCEEDED,
        True,
        "React component Card (function) in the code block",
    )
