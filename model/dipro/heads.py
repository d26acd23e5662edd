"""One output head per task (reference §2.7).

Each class token has its own MLP, Linear(D -> D) -> ReLU -> Dropout -> Linear(D -> out):
progression has 7 class tokens (one per finding, 3 logits: worsened / improved / no change, for
the most recent valid CXR pair), mortality one token with one logit, length of stay one token
with 4 logits (``vocab.LOS_BINS``). The paper trained one network per task; here a network
carries the heads named in ``config.tasks``, so one checkpoint can serve all three.
"""

from __future__ import annotations

import torch
from torch import nn

from dipro.config import DiproConfig


def task_layout(config: DiproConfig) -> dict[str, tuple[int, int]]:
    """Return, per task, (number of class tokens, outputs per token)."""
    layout = {
        "progression": (config.num_findings, 3),
        "mortality": (1, 1),
        "los": (1, config.num_los_bins),
    }
    return {task: layout[task] for task in config.tasks}


class TaskHeads(nn.Module):
    """The heads of every configured task, reading consecutive class tokens."""

    def __init__(self, config: DiproConfig) -> None:
        super().__init__()
        d = config.d_model
        self.layout = task_layout(config)
        self.heads = nn.ModuleDict(
            {
                task: nn.ModuleList(
                    nn.Sequential(
                        nn.Linear(d, d), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(d, out)
                    )
                    for _ in range(tokens)
                )
                for task, (tokens, out) in self.layout.items()
            }
        )

    @property
    def num_tokens(self) -> int:
        """Total class tokens C over all tasks."""
        return sum(tokens for tokens, _ in self.layout.values())

    @property
    def num_outputs(self) -> int:
        """Total logits over all tasks (tokens x outputs per token)."""
        return sum(tokens * out for tokens, out in self.layout.values())

    def add_flat(
        self, logits: dict[str, torch.Tensor], flat: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``logits`` plus ``flat`` [B, num_outputs], cut per task in layout order."""
        out: dict[str, torch.Tensor] = {}
        start = 0
        for task, (tokens, width) in self.layout.items():
            part = flat[:, start : start + tokens * width].to(logits[task].dtype)
            start += tokens * width
            out[task] = logits[task] + part.reshape(logits[task].shape)
        return out

    def forward(self, class_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """[B, C, D] -> logits per task: progression [B, K, 3], mortality [B], los [B, 4]."""
        logits: dict[str, torch.Tensor] = {}
        start = 0
        for task, module in self.heads.items():
            heads = list(module.children())
            outs = [head(class_tokens[:, start + i]) for i, head in enumerate(heads)]
            start += len(heads)
            stacked = torch.stack(outs, dim=1)  # [B, tokens, out]
            if task == "mortality":
                logits[task] = stacked[:, 0, 0]
            elif task == "los":
                logits[task] = stacked[:, 0]
            else:
                logits[task] = stacked
        return logits
