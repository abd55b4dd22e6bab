"""The per-run quality signal: each agent's check on its own output (pure functions, no database)."""

from agents.models import QualityCheck
from agents.quality import check_output

FENCE = "```"


def block(language: str, body: str) -> str:
    return f"Here you go:\n\n{FENCE}{language}\n{body}\n{FENCE}\n\nThat should work."


# -- Python (Marcus, Alex) ------------------------------------------------------------------


def test_it_accepts_a_python_code_block_that_parses():
    code = "from fastapi import FastAPI\n\napp = FastAPI()\n\n@app.get('/ping')\ndef ping():\n    return 'ok'"
    text = block("python", code)
    result = check_output(QualityCheck.PYTHON_CODE, text)
    assert result.ok is True
    assert "parses as Python" in result.detail


def test_it_rejects_a_python_code_block_with_a_syntax_error_and_says_where():
    result = check_output(QualityCheck.PYTHON_CODE, block("python", "def ping(:\n    return 1"))
    assert result.ok is False
    assert "not valid Python" in result.detail
    assert "line 1" in result.detail


def test_it_checks_the_python_block_even_when_another_language_comes_first():
    text = block("bash", "pip install fastapi") + block("python", "import fastapi")
    assert check_output(QualityCheck.PYTHON_CODE, text).ok is True


def test_it_checks_the_first_block_when_none_is_tagged_python():
    assert check_output(QualityCheck.PYTHON_CODE, block("", "x = [1, 2, 3]")).ok is True
    assert check_output(QualityCheck.PYTHON_CODE, block("", "x = [1, 2,")).ok is False


def test_it_checks_the_whole_output_when_there_is_no_code_block():
    assert check_output(QualityCheck.PYTHON_CODE, "def test_add():\n    assert 1 + 1 == 2\n").ok is True
    result = check_output(QualityCheck.PYTHON_CODE, "Sorry, I cannot help with that request.")
    assert result.ok is False
    assert "no code block" in result.detail


def test_it_checks_a_block_cut_off_at_max_tokens_up_to_the_end():
    assert check_output(QualityCheck.PYTHON_CODE, "```python\ndef f():\n    return {'a':").ok is False
    assert check_output(QualityCheck.PYTHON_CODE, "```python\nimport os\n").ok is True


def test_it_rejects_an_empty_code_block():
    assert check_output(QualityCheck.PYTHON_CODE, "```python\n\n```").ok is False


def test_it_survives_code_that_would_crash_the_parser():
    result = check_output(QualityCheck.PYTHON_CODE, block("python", "x = " + "(" * 5000 + ")" * 5000))
    assert (result.ok, result.detail) == (
        False,
        "the code block is not valid Python: too many nested parentheses (line 1)",
    )
    assert check_output(QualityCheck.PYTHON_CODE, block("python", "x = '\x00'")).ok is False


# -- React (Emily) --------------------------------------------------------------------------


def test_it_finds_a_function_component_returning_jsx():
    code = (
        "export default function UserCard({ user }) {\n  return (\n    <div className='card'>{user.name}</div>\n  );\n}"
    )
    result = check_output(QualityCheck.REACT_COMPONENT, block("jsx", code))
    assert result.ok is True
    assert "UserCard" in result.detail


def test_it_finds_an_arrow_function_component_with_types():
    code = "const Button: React.FC<Props> = ({ label, onClick }) => (\n  <button onClick={onClick}>{label}</button>\n);"
    assert check_output(QualityCheck.REACT_COMPONENT, block("tsx", code)).ok is True


def test_it_finds_a_memoised_component():
    code = "const Row = React.memo(function Row({ item }) {\n  return <li>{item}</li>;\n});"
    assert check_output(QualityCheck.REACT_COMPONENT, block("jsx", code)).ok is True


def test_it_finds_a_class_component():
    code = "class Clock extends React.Component {\n  render() {\n    return <p>{this.state.now}</p>;\n  }\n}"
    result = check_output(QualityCheck.REACT_COMPONENT, block("javascript", code))
    assert result.ok is True
    assert "class" in result.detail


def test_it_rejects_code_without_jsx():
    code = "function formatDate(date) {\n  return date.toISOString();\n}"
    result = check_output(QualityCheck.REACT_COMPONENT, block("js", code))
    assert result.ok is False
    assert "no JSX" in result.detail


def test_it_rejects_jsx_that_is_not_in_a_capitalised_component():
    code = "function render() {\n  return <div>hi</div>;\n}"
    assert check_output(QualityCheck.REACT_COMPONENT, block("jsx", code)).ok is False


def test_it_rejects_prose_about_react():
    assert check_output(QualityCheck.REACT_COMPONENT, "You could write a React component for that.").ok is False


# -- Dockerfile (Jordan) --------------------------------------------------------------------


def test_it_accepts_a_dockerfile_with_a_from_line():
    code = "# syntax=docker/dockerfile:1\nFROM python:3.12-slim AS app\nWORKDIR /app\nCOPY . .\nCMD python app.py"
    result = check_output(QualityCheck.DOCKERFILE, block("dockerfile", code))
    assert result.ok is True
    assert result.detail == "FROM python:3.12-slim"


def test_it_accepts_a_lowercase_from_instruction():
    assert check_output(QualityCheck.DOCKERFILE, block("Dockerfile", "from node:22-alpine\nRUN npm ci")).ok is True


def test_it_checks_the_dockerfile_block_not_the_compose_file():
    text = block("yaml", "services:\n  web:\n    build: .") + block("dockerfile", "FROM nginx:1.27")
    assert check_output(QualityCheck.DOCKERFILE, text).ok is True


def test_it_rejects_a_dockerfile_without_from():
    result = check_output(QualityCheck.DOCKERFILE, block("dockerfile", "RUN apt-get update\nCOPY . /app"))
    assert result.ok is False
    assert "no FROM line" in result.detail


def test_it_does_not_count_a_sentence_that_starts_with_from():
    assert check_output(QualityCheck.DOCKERFILE, "From the official image, copy your code in.").ok is False
    assert check_output(QualityCheck.DOCKERFILE, "FROM --platform=linux/amd64 ${BASE_IMAGE} AS build").ok is True


# -- no check -------------------------------------------------------------------------------


def test_it_records_nothing_for_an_agent_without_a_check():
    result = check_output(QualityCheck.NONE, "anything")
    assert result.ok is None
    assert result.detail == ""
