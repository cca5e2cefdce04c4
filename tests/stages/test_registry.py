"""The stage registry: every configured stage is registered; a typo gets a suggestion."""

from __future__ import annotations

import pytest

from fars.config import STAGE_NAMES, FarsConfig
from fars.stages import get_stage


def test_every_stage_is_registered_and_builds() -> None:
    cfg = FarsConfig()
    for name in STAGE_NAMES:
        assert callable(get_stage(name)(cfg))


def test_a_typo_suggests_the_nearest_stage() -> None:
    with pytest.raises(KeyError, match=r"did you mean.*planning"):
        get_stage("planing")
