"""A GitLab project trained by opsflow on every push: the whole CI configuration of the project, as a form.

There is no per-project CI file to copy (thesis §8.2.5): the fields are those of
:class:`ci_training.models.CiProject` (GitLab URL, project, API token and webhook secret as ``SecretStr``, branch
filters, test command, training entry point and arguments, CPU/GPU mode with the thesis's Table 6.2 settings).

Example:
    >>> p = GitLabProject(project="ml/loans", api_token="t", webhook_secret="s", cpu_only=False)
    >>> p.settings().pool, p.get_block_type_slug()
    ('gpu', 'opsflow-gitlab-project')
"""

from __future__ import annotations

from prefect.blocks.core import Block

from blocks._docs import readme_section
from ci_training.gitlab import GitLabStatuses
from ci_training.models import CiProject


class GitLabProject(Block, CiProject):
    """A GitLab project whose pushes run its tests, then its training on Spark, with commit statuses.

    Examples:
        Load a project and post a status to one of its commits:
        ```python
        from blocks import GitLabProject

        gitlab_project = GitLabProject.load("BLOCK_NAME")
        gitlab_project.get_client().statuses("0123456789abcdef0123456789abcdef01234567")
        ```
    """

    _block_type_name = "GitLab Project"
    _block_type_slug = "opsflow-gitlab-project"
    _description = "A GitLab project trained on every push: secrets, branches, test command, Spark training."
    _documentation_url = readme_section("CI-triggered training")

    def settings(self) -> CiProject:
        """The plain settings (what the core and the receiver take)."""
        return CiProject.model_validate(self.model_dump(include=set(CiProject.model_fields)))

    def get_client(self) -> GitLabStatuses:
        """The commit-status adapter of this project's GitLab (python-gitlab)."""
        return GitLabStatuses.of(self.settings())
