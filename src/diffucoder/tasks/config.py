"""``TaskSuiteConfig``: how the synthetic suite is generated (shared by SFT and evaluation,
so both see the same held-out tasks)."""
from __future__ import annotations

from dataclasses import dataclass

from diffucoder.config import setting


@dataclass
class TaskSuiteConfig:
    seed: int = setting(0, min=0, help="wording and test-input seed (the split does not depend on it)")
    heldout_fraction: float = setting(0.2, min=0.01, max=0.99, help="share of parameter sets held out")
    max_per_family: int = setting(40, min=0, help="tasks per family and split (0 = all)")
    families: list[str] = setting(default_factory=list,
                                  help="task families to include (empty = all); e.g. [affine_map, polynomial]")
    wordings: int = setting(1, min=1, help="wordings of each training task (held-out tasks: one)")
    rl_fraction: float = setting(0.0, min=0.0, max=0.95,
                                 help="share of the training parameter sets kept out of SFT for RL (tasks-rl.jsonl)")

    def suite_args(self) -> dict:
        """Keyword arguments of ``generate_suite`` for this config."""
        return {"seed": self.seed, "heldout_fraction": self.heldout_fraction,
                "max_per_family": self.max_per_family, "families": self.families or None,
                "wordings": self.wordings, "rl_fraction": self.rl_fraction}
