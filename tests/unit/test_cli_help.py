"""expconf.cli.help: expconf's own ``--help`` page."""

from __future__ import annotations

import re
from pathlib import Path

from expconf.cli.help import help_text
from expconf.config.store import register_all


def test_help_lists_recipes_groups_and_a_users_own_options(tmp_path: Path) -> None:
    register_all()
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "long.yaml").write_text("# @package _global_\n# Ten times longer.\n")
    text = help_text(["--config-dir", str(tmp_path)])
    assert re.search(r"^  gpt +GPT-style pretraining sized for a laptop CPU", text, re.M)
    assert "  trainer     cpu, ddp_cpu, gpu" in text
    assert "  experiment  long, megatron_gpt_migrated" in text
    assert "expconf-runs ls" in text and "expconf-migrate" in text and "docs/reference.md" in text
    assert "powered by Hydra" not in text
