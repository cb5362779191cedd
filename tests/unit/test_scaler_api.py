"""The scaler's Python API without anything running: Blocks bind the URLs, preview acts on nothing and saves
nothing, status reads the state, the Docker backend takes the engine of the Block and never replaces DOCKER_HOST."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from opsflow.api import Site
from opsflow.api.scaler import DOCKER_SLUG, PROMETHEUS_SLUG, SPARK_SLUG, Preview, ScalerAPI
from opsflow.errors import NotFoundError
from spark_scaler.backends.docker import DockerBackend
from spark_scaler.backends.local import LocalProcessBackend
from spark_scaler.config import EXAMPLE_THESIS_YAML
from spark_scaler.controller import save_state
from spark_scaler.models import Action, Decision, ScalerState

#: Nothing listens on port 1 of loopback: every read is refused at once.
NOWHERE = "http://127.0.0.1:1"


class BlockSite(Site):
    """A site whose Blocks are a dict (slug → values); records which it was asked for."""

    def __init__(self, home: Path, blocks: dict[str, dict[str, Any]]) -> None:
        super().__init__(f"{NOWHERE}/api", None, "local", home, is_local=False)
        self.blocks = blocks
        self.asked: list[tuple[str, str | None]] = []

    def block_values(self, block_type_slug: str, name: str | None = None) -> dict[str, Any]:
        self.asked.append((block_type_slug, name))
        if block_type_slug not in self.blocks:
            raise NotFoundError(f"no {block_type_slug} block named {name!r}")
        return self.blocks[block_type_slug]


SITE_BLOCKS = {
    SPARK_SLUG: {"master_url": "spark://127.0.0.1:1", "ui_url": NOWHERE},
    PROMETHEUS_SLUG: {"url": NOWHERE},
    DOCKER_SLUG: {"base_url": "unix:///run/site-engine.sock"},
}


def config_file(tmp_path: Path, opsflow: str) -> Path:
    path = tmp_path / "scaler.yaml"
    text = EXAMPLE_THESIS_YAML.replace("localhost:9090", "127.0.0.1:1")
    path.write_text(text + "opsflow:\n" + "".join(f"  {line}\n" for line in opsflow.splitlines()))
    return path


def test_the_blocks_named_by_the_config_replace_its_urls(tmp_path: Path) -> None:
    site = BlockSite(tmp_path, SITE_BLOCKS)
    cfg = ScalerAPI(site, config_file(tmp_path, "blocks: site-a\nbackend: docker")).config()
    assert cfg.general.prometheus_url == NOWHERE
    assert (cfg.opsflow.master_url, cfg.opsflow.spark_master_ui_url) == ("spark://127.0.0.1:1", NOWHERE)
    assert cfg.opsflow.docker_host == "unix:///run/site-engine.sock"
    assert {name for _, name in site.asked} == {"site-a"}


def test_the_local_backend_reads_no_docker_block(tmp_path: Path) -> None:
    site = BlockSite(tmp_path, {k: v for k, v in SITE_BLOCKS.items() if k != DOCKER_SLUG})
    ScalerAPI(site, config_file(tmp_path, "local_stack: true")).config()
    assert sorted(slug for slug, _ in site.asked) == sorted([SPARK_SLUG, PROMETHEUS_SLUG])
    assert {name for _, name in site.asked} == {"local"}


def test_a_missing_block_names_the_key_that_asked_for_it(tmp_path: Path) -> None:
    site = BlockSite(tmp_path, {})
    with pytest.raises(NotFoundError, match=r"opsflow-spark-cluster .*named by opsflow.local_stack"):
        ScalerAPI(site, config_file(tmp_path, "local_stack: true")).config()


def test_listing_6_6_unchanged_reads_the_blocks_the_caller_names_and_the_file_s_own_name_wins(
    tmp_path: Path,
) -> None:
    thesis = tmp_path / "listing-6-6.yaml"
    thesis.write_text(EXAMPLE_THESIS_YAML)
    site = BlockSite(tmp_path, SITE_BLOCKS)
    cfg = ScalerAPI(site, thesis, blocks="local").config()
    assert cfg.general.prometheus_url == NOWHERE and cfg.opsflow.spark_master_ui_url == NOWHERE
    assert cfg.opsflow.policy == "thesis" and {name for _, name in site.asked} == {"local"}
    assert ScalerAPI(BlockSite(tmp_path, SITE_BLOCKS), thesis).config().general.prometheus_url == (
        "http://localhost:9090"  # no Blocks named anywhere: the file's own URL
    )
    site = BlockSite(tmp_path, SITE_BLOCKS)
    ScalerAPI(site, config_file(tmp_path, "blocks: site-a"), blocks="local").config()
    assert {name for _, name in site.asked} == {"site-a"}
    with pytest.raises(NotFoundError, match=r"named by the blocks parameter \(prod\)"):
        ScalerAPI(BlockSite(tmp_path, {}), thesis, blocks="prod").config()


def test_a_config_without_blocks_reads_none(tmp_path: Path) -> None:
    site = BlockSite(tmp_path, {})
    cfg = ScalerAPI(site, config_file(tmp_path, f"spark_master_ui_url: {NOWHERE}")).config()
    assert site.asked == [] and cfg.opsflow.spark_master_ui_url == NOWHERE


def test_preview_holds_on_unreachable_sources_and_saves_nothing(tmp_path: Path) -> None:
    api = ScalerAPI(BlockSite(tmp_path, SITE_BLOCKS), config_file(tmp_path, "local_stack: true"))
    preview = api.preview()
    assert preview.decision.action == Action.HOLD
    assert "missing data" in preview.decision.reason
    assert any(p.startswith("Spark master unreachable") for p in preview.observation.problems)
    assert not api.state_path.exists()
    assert api.state_path == tmp_path / "scaler" / "scaler.state.json"


def test_preview_shows_decision_observation_and_policy_as_tables(tmp_path: Path) -> None:
    preview = ScalerAPI(BlockSite(tmp_path, SITE_BLOCKS), config_file(tmp_path, "local_stack: true")).preview()
    assert isinstance(preview, Preview)
    html = preview._repr_html_()
    assert html.count("<table>") == 3 and "next tick would" in html and "policy" in html
    markdown = preview._repr_markdown_()
    assert "| bounds | 1 .. 30 workers |" in markdown and "| Blocks | local |" in markdown
    frame = preview.to_frame()
    assert set(frame["section"]) == {"next tick would", "observation", f"policy ({preview.config_path})"}


def test_status_lists_heat_cooldown_and_recent_decisions_newest_first(tmp_path: Path) -> None:
    api = ScalerAPI(BlockSite(tmp_path, SITE_BLOCKS), config_file(tmp_path, "local_stack: true"))
    now = 1_000_000_000.0
    decisions = [
        Decision(at=now - 60, action=Action.SCALE_OUT, current=1, target=2, reason="first"),
        Decision(at=now, action=Action.HOLD, current=2, target=2, reason="second"),
    ]
    save_state(api.state_path, ScalerState(heat={"cpu": 1}, last_action_at=now - 60, decisions=decisions))
    status = api.status()
    assert status.heat == {"cpu": 1}
    assert status.cooldown_left_s == 0.0  # the thesis's 180 s ended long ago
    assert status.alive_workers is None and status.problems  # the master is unreachable: said, not raised
    assert [d.reason for d in status.recent] == ["second", "first"]
    assert status.recent.to_frame()["action"].tolist() == ["hold", "scale_out"]
    assert status.bounds == (1, 30)


def test_the_docker_backend_takes_the_engine_of_the_block_not_docker_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/users-own-docker.sock")
    api = ScalerAPI(BlockSite(tmp_path, SITE_BLOCKS), config_file(tmp_path, "local_stack: true\nbackend: docker"))
    backend = api.backend()
    assert isinstance(backend, DockerBackend)
    assert backend.engine.base_url == "unix:///run/site-engine.sock"
    assert backend.master_url == "spark://127.0.0.1:1" and backend.name_prefix == "computing_spark-worker"
    # Without Blocks, the site's DOCKER_HOST is the engine: used as it is, never replaced.
    plain = ScalerAPI(BlockSite(tmp_path, {}), config_file(tmp_path, "backend: docker")).backend()
    assert isinstance(plain, DockerBackend)
    assert plain.engine.base_url == "unix:///run/users-own-docker.sock"


def test_the_local_backend_registers_with_the_blocks_master_under_the_sites_home(tmp_path: Path) -> None:
    backend = ScalerAPI(BlockSite(tmp_path, SITE_BLOCKS), config_file(tmp_path, "local_stack: true")).backend()
    assert isinstance(backend, LocalProcessBackend)
    assert backend.home == tmp_path and backend.master_url == "spark://127.0.0.1:1"
    assert backend.ui_base_port == 2  # the master's UI port + 1
    assert backend.workers() == []
