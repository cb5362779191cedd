"""Where each Block type's documentation is: a section of the project's README (the Prefect UI links to it).

Example:
    >>> str(readme_section("Pointing the same code at a site"))
    'https://opsflow.invalid/README.md#pointing-the-same-code-at-a-site'
"""

from __future__ import annotations

import re

from pydantic import HttpUrl

#: The README as published with the repository. This checkout names no public home (no project URL in
#: pyproject.toml, no git remote), so the host is a placeholder in the reserved ``.invalid`` domain: change this one
#: line when the repository is published. Prefect validates the link as an absolute http(s) URL when it registers a
#: Block type, so a relative ``README.md#...`` would make every ``Block.save`` fail.
README_URL = "https://opsflow.invalid/README.md"


def anchor(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub, GitLab) gives ``heading``.

    >>> anchor("Node update rollout (the CSCS Node Update service)")
    'node-update-rollout-the-cscs-node-update-service'
    """
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def readme_section(heading: str) -> HttpUrl:
    """The URL of the README section titled ``heading`` (a Block's ``_documentation_url``)."""
    return HttpUrl(f"{README_URL}#{anchor(heading)}")
