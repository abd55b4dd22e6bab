"""Fixtures for agents tests: the routing fixtures (users, providers) plus the sprint report's four agents."""

from __future__ import annotations

import pytest

from agents.models import Agent, QualityCheck
from tests.routing.conftest import providers, staff_user, user

__all__ = ["agents", "providers", "staff_user", "user"]

AGENTS = [
    ("marcus", "Marcus", "Backend engineer", "code_generation", QualityCheck.PYTHON_CODE, "FastAPI endpoints"),
    ("emily", "Emily", "Frontend engineer", "code_generation", QualityCheck.REACT_COMPONENT, "React components"),
    ("alex", "Alex", "QA engineer", "testing", QualityCheck.PYTHON_CODE, "pytest unit tests"),
    ("jordan", "Jordan", "DevOps engineer", "code_generation", QualityCheck.DOCKERFILE, "Dockerfiles"),
]


@pytest.fixture
def agents(db) -> dict[str, Agent]:
    """Marcus, Emily, Alex and Jordan, keyed by slug, in the sprint report's order."""
    return {
        slug: Agent.objects.create(
            slug=slug,
            name=name,
            role=role,
            capability=capability,
            quality_check=check,
            system_prompt=f"You are {name}, a {role.lower()}. You write {what}. Answer with code first.",
            workflow_prompt=f"Write the {what} for this feature: {{feature}}",
            position=position,
        )
        for position, (slug, name, role, capability, check, what) in enumerate(AGENTS)
    }
