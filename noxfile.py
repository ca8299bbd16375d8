"""Developer sessions. They run in the current environment (torch is too large to
reinstall per session): activate the project's virtual environment first."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The test suite (the same command as the README and CI)."""
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff lint and format check, and the import contracts."""
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")
