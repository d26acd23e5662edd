"""The DiPro network: regions -> STD -> PAE -> MMF -> static fusion -> task heads
(+ the optional EHR summary path, ``dipro.summary``).

Paper: Liu et al., "Multimodal Disease Progression Modeling via Spatiotemporal Disentanglement
and Multiscale Alignment", NeurIPS 2025 (reference §2). The constructor takes a config, never a
dataset. A patient with fewer than two CXRs runs through the same network with every pair
masked (the paper's EHR-only variant, Table 2), and ``DiproOutput.used_pairs`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dipro.backbone import backbone_input_channels, build_backbone
from dipro.batch import DiproBatch
from dipro.config import DiproConfig
from dipro.disentangle import Disentangled, RegionFeatureAdapter, SpatiotemporalDisentanglement
from dipro.fusion import (
    EHRCrossAttention,
    GlobalEHREncoder,
    IntervalEHREncoder,
    RegionAwareAttention,
)
from dipro.heads import TaskHeads
from dipro.padding import LearnableRegionPadding
from dipro.pae import ProgressionHeads
from dipro.static import StaticFusion
from dipro.summary import SummaryPath


@dataclass(frozen=True, slots=True)
class DiproOutput:
    """What one forward pass returns.

    Attributes:
        progression: float [B, K, 3] logits or None when the task is not configured.
        mortality: float [B] logit or None.
        los: float [B, 4] logits or None.
        used_pairs: bool [B]; False = no valid CXR pair, the EHR-only path produced it.
        pair_valid: bool [B, P] valid consecutive pairs (P >= 1).
        parts: STD features (reversed ones only when requested) for the losses.
    """

    progression: torch.Tensor | None
    mortality: torch.Tensor | None
    los: torch.Tensor | None
    used_pairs: torch.Tensor
    pair_valid: torch.Tensor
    parts: Disentangled


def _pad_cxr_slots(batch: DiproBatch, slots: int) -> DiproBatch:
    """Append padded CXR slots so that N >= ``slots`` (one pair must exist as a tensor)."""
    missing = slots - batch.cxr_crops.shape[1]
    if missing <= 0:
        return batch
    crops = batch.cxr_crops
    b, _, r, c, h, w = crops.shape
    return DiproBatch(
        batch.ehr_values,
        batch.ehr_mask,
        batch.ehr_hours,
        batch.ehr_row_mask,
        batch.demographics,
        torch.cat([crops, crops.new_zeros(b, missing, r, c, h, w)], dim=1),
        torch.cat([batch.region_mask, batch.region_mask.new_zeros(b, missing, r)], dim=1),
        torch.cat([batch.cxr_mask, batch.cxr_mask.new_zeros(b, missing)], dim=1),
        torch.cat([batch.cxr_hours, batch.cxr_hours.new_zeros(b, missing)], dim=1),
    )


class DiPro(nn.Module):
    """DiPro for the tasks in ``config.tasks``."""

    def __init__(self, config: DiproConfig) -> None:
        super().__init__()
        self.config = config
        #: Crops per backbone call in eval mode (memory bound for large batches).
        self.inference_chunk = 160
        d, h, drop = config.d_model, config.heads, config.dropout
        self.backbone = build_backbone(config)
        self.padding = LearnableRegionPadding(
            config.num_regions, backbone_input_channels(config), config.crop_size
        )
        self.adapter = RegionFeatureAdapter(self.backbone.out_dim, d, drop)
        self.std = SpatiotemporalDisentanglement(d, drop)
        self.pae_heads = ProgressionHeads(d, config.num_findings)
        ehr_in = config.num_variables * (2 if config.ehr_mask_channels else 1)
        self.ehr_encoder = GlobalEHREncoder(ehr_in, d, h, config.ffn_mult * d, drop)
        self.interval_encoder = IntervalEHREncoder(d, h, drop)
        self.region_layers = nn.ModuleList(
            RegionAwareAttention(d, h, drop) for _ in range(config.local_fusion_layers)
        )
        self.ehr_cross = EHRCrossAttention(d, h, drop)
        self.final_layer = nn.TransformerEncoderLayer(
            d, h, config.ffn_mult * d, drop, batch_first=True
        )
        self.heads = TaskHeads(config)
        self.class_tokens = nn.Parameter(torch.randn(self.heads.num_tokens, d))
        self.static_fusion = StaticFusion(
            d,
            config.num_demographics,
            config.group_num,
            h,
            drop,
            direct_demographics=config.direct_demographics,
        )
        self.summary: SummaryPath | None = None
        if config.summary_path:
            self.summary = SummaryPath(
                config.num_variables, config.num_demographics, self.heads.num_outputs, drop
            )
        self.region_embedding: nn.Parameter | None = None
        if config.region_embedding:
            self.region_embedding = nn.Parameter(torch.randn(config.num_regions, d))

    @property
    def feature_dim(self) -> int:
        """Width F of one crop's pooled backbone feature (2048 for ResNet-50)."""
        return int(self.backbone.out_dim)

    def encode_crops(self, crops: torch.Tensor, region_mask: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of whole CXRs: [M, R, C, H, W] -> [M, R, F].

        The learned padding fills missing regions first, so the result depends only on the
        CXR's crops, its region mask and the backbone + padding weights: it can be computed
        once per image and cached (``backbone_state`` names the weights it depends on).
        """
        m, r = region_mask.shape
        flat = self.padding(crops, region_mask).flatten(0, 1)  # [M * R, C, H, W]
        if self.training:  # one pass: BatchNorm statistics need the whole batch
            pooled = self.backbone(flat)
        else:  # eval BatchNorm is per sample, so chunking bounds memory without changing outputs
            pooled = torch.cat([self.backbone(c) for c in flat.split(self.inference_chunk)])
        out: torch.Tensor = pooled.reshape(m, r, -1)
        return out

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The weights ``encode_crops`` depends on (backbone and learned padding), by name."""
        state = self.state_dict()
        return {k: v for k, v in state.items() if k.startswith(("backbone.", "padding."))}

    def encode_regions(
        self, batch: DiproBatch, region_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return region features F [B, N, R, D]; only real CXRs go through the backbone.

        Args:
            batch: The inputs.
            region_features: Optional float [B, N, R, F] pooled backbone features computed
                earlier (``encode_crops``, e.g. from a feature cache); then the crops are not
                read and the backbone does not run.
        """
        b, n, r = batch.region_mask.shape
        real = batch.cxr_mask  # [B, N]
        features = batch.ehr_values.new_zeros(b, n, r, self.config.d_model)
        if not bool(real.any()):
            return features
        if region_features is None:
            pooled = self.encode_crops(batch.cxr_crops[real], batch.region_mask[real])
        else:
            pooled = region_features[real].to(features.dtype)  # [M, R, F]
        encoded = self.adapter(pooled.flatten(0, 1))  # [M * R, D]
        features = features.to(encoded.dtype)
        features[real] = encoded.reshape(-1, r, self.config.d_model)
        return features

    def forward(
        self,
        batch: DiproBatch,
        with_reversed: bool | None = None,
        region_features: torch.Tensor | None = None,
    ) -> DiproOutput:
        """Score a batch.

        Args:
            batch: The inputs; N may be 0..config.max_cxrs.
            with_reversed: Compute the PAE reversed-pair features (default: in training).
            region_features: Optional float [B, N, R, F] pooled backbone features of the
                batch's CXRs (see ``encode_regions``); the crops may then be empty (H = W = 0).
        """
        if batch.cxr_crops.shape[1] > self.config.max_cxrs:
            raise ValueError(
                f"{batch.cxr_crops.shape[1]} CXR slots exceed max_cxrs={self.config.max_cxrs}"
            )
        if region_features is not None and region_features.shape[1] < batch.cxr_crops.shape[1]:
            raise ValueError("region_features must cover every CXR slot of the batch")
        missing = 2 - batch.cxr_crops.shape[1]
        batch = _pad_cxr_slots(batch, 2)
        if region_features is not None and missing > 0:
            pad = region_features.new_zeros(batch.batch_size, missing, *region_features.shape[2:])
            region_features = torch.cat([region_features, pad], dim=1)
        reverse = self.training if with_reversed is None else with_reversed
        b, _, r = batch.region_mask.shape
        features = self.encode_regions(batch, region_features)  # [B, N, R, D]
        pair_valid = batch.cxr_mask[:, :-1] & batch.cxr_mask[:, 1:]  # [B, P]
        parts = self.std(features, pair_valid, reverse)
        ehr_in = batch.ehr_values
        if self.config.ehr_mask_channels:
            ehr_in = torch.cat([ehr_in, batch.ehr_mask.to(ehr_in.dtype)], dim=-1)
        ehr = self.ehr_encoder(ehr_in, batch.ehr_hours, batch.ehr_row_mask)  # [B, T, D]
        local = self.interval_encoder(
            ehr,
            batch.ehr_hours,
            batch.ehr_row_mask,
            batch.cxr_hours[:, :-1],
            batch.cxr_hours[:, 1:],
            pair_valid,
        )  # [B, P, T, D]
        regions = self._fuse_locally(parts.dynamic, local, batch.ehr_row_mask)  # [B, P, R, D]
        region_tokens = regions.flatten(1, 2)  # [B, P*R, D], pair-major
        token_valid = pair_valid.repeat_interleave(r, dim=1)  # [B, P*R]
        history = self.ehr_cross(ehr, region_tokens, token_valid)  # H_global [B, T, D]
        cls = self.class_tokens.to(ehr.dtype).expand(b, -1, -1)
        tokens = torch.cat([cls, region_tokens.to(ehr.dtype), history], dim=1)
        valid = torch.cat(
            [token_valid.new_ones(b, cls.shape[1]), token_valid, batch.ehr_row_mask], dim=1
        )
        mask = self._final_attention_mask(valid, pair_valid, r).to(tokens.dtype)
        fused = self.final_layer(tokens, src_mask=mask)[:, : cls.shape[1]]
        fused = self.static_fusion(
            fused, parts.static.flatten(1, 2).to(fused.dtype), token_valid, batch.demographics
        )
        logits = self.heads(fused)
        if self.summary is not None:
            wide = self.summary(
                batch.ehr_values, batch.ehr_mask, batch.ehr_row_mask, batch.demographics
            )
            logits = self.heads.add_flat(logits, wide)
        return DiproOutput(
            progression=logits.get("progression"),
            mortality=logits.get("mortality"),
            los=logits.get("los"),
            used_pairs=pair_valid.any(dim=1),
            pair_valid=pair_valid,
            parts=parts,
        )

    def _fuse_locally(
        self, dynamic: torch.Tensor, local: torch.Tensor, row_valid: torch.Tensor
    ) -> torch.Tensor:
        """Region-aware attention per interval (§2.6c): [B, P, R, D] -> [B, P, R, D]."""
        b, p, r, d = dynamic.shape
        if self.region_embedding is not None:
            dynamic = dynamic + self.region_embedding.to(dynamic.dtype)
        x = dynamic.reshape(b * p, r, d).to(local.dtype)
        ehr = local.reshape(b * p, -1, d)
        rows = row_valid.repeat_interleave(p, dim=0)  # [B*P, T]
        for layer in self.region_layers:
            x = layer(x, ehr, rows)
        return x.reshape(b, p, r, d)

    def _final_attention_mask(
        self, valid: torch.Tensor, pair_valid: torch.Tensor, regions: int
    ) -> torch.Tensor:
        """Additive mask [B * heads, L, L] for the final self-attention (§2.6e).

        Every query ignores padded keys. The progression class tokens also ignore the region
        tokens of all but the most recent valid pair: the task grades that pair, exactly the
        single-pair input the paper's DP model saw (§1.7).
        """
        b, length = valid.shape
        allowed = valid[:, None, :].expand(b, length, length).clone()  # [B, Lq, Lk]
        if "progression" in self.config.tasks:
            p = pair_valid.shape[1]
            last = pair_valid.sum(dim=1) - 1  # [B], -1 when no pair
            pair_of_token = torch.arange(p, device=valid.device).repeat_interleave(regions)
            other_pair = pair_of_token[None, :] != last[:, None]  # [B, P*R]
            # Class tokens follow vocab.TASKS order, so the progression ones come first.
            queries = slice(0, self.heads.layout["progression"][0])
            keys = slice(self.heads.num_tokens, self.heads.num_tokens + p * regions)
            allowed[:, queries, keys] &= ~other_pair[:, None, :]
        mask = torch.zeros(allowed.shape, device=valid.device).masked_fill(~allowed, float("-inf"))
        return mask.repeat_interleave(self.config.heads, dim=0)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
