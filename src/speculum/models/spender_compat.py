"""Weights from the reference implementation (PyPI ``spender``) and back.

Key mapping (reference -> speculum), ``i`` = 1, 2, 3 and ``j`` = layer index:

==================================  =====================================
``encoder.conv{i}.0.weight``         ``encoder.blocks.{i-1}.weight``
``encoder.conv{i}.0.bias``           dropped: cancelled exactly by InstanceNorm
``encoder.conv{i}.2.weight``         ``encoder.blocks.{i-1}.prelu.weight``
``encoder.mlp.{3j}.weight|bias``     ``encoder.mlp.{2j}.weight|bias``
``encoder.mlp.{3j+1}.weight``        ``encoder.mlp.{2j+1}.weight`` (PReLU)
``decoder.mlp.{3j}.weight|bias``     ``decoder.mlp.{2j}.weight|bias``
``decoder.mlp.{3j+1}.beta|gamma``    ``decoder.mlp.{2j+1}.beta|gamma``
``encoder.instrument.lsf.weight``    ``lsf`` (flipped: the reference stores a
                                     correlation kernel)
``decoder.wave_rest``                checked against ``config.restframe``
``encoder.instrument.wave_obs``      checked against the instrument grid
==================================  =====================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from speculum.models.autoencoder import SpectrumAutoencoder
from speculum.models.config import AutoencoderConfig

__all__ = ["from_spender_state_dict", "to_spender_state_dict"]

_RULES = [
    (r"encoder\.conv(\d)\.0\.weight", lambda m: f"encoder.blocks.{int(m[1]) - 1}.weight"),
    (r"encoder\.conv(\d)\.2\.weight", lambda m: f"encoder.blocks.{int(m[1]) - 1}.prelu.weight"),
    (r"(encoder|decoder)\.mlp\.(\d+)\.(\w+)", lambda m: f"{m[1]}.mlp.{_mlp_index(int(m[2]))}.{m[3]}"),
]


def _mlp_index(ref_index: int) -> int:
    layer, slot = divmod(ref_index, 3)
    if slot == 2:
        raise KeyError(f"reference MLP slot {ref_index} is an Identity placeholder and has no parameters")
    return 2 * layer + slot


def _ref_to_ours(key: str) -> str | None:
    for pattern, target in _RULES:
        m = re.fullmatch(pattern, key)
        if m:
            return target(m)
    return None


def from_spender_state_dict(state_dict: Mapping[str, torch.Tensor], config: AutoencoderConfig) -> SpectrumAutoencoder:
    """Build a :class:`SpectrumAutoencoder` from a reference ``spender`` state dict.

    Args:
        state_dict: ``spender.SpectrumAutoencoder.state_dict()`` (or the ``"model"`` entry
            of a reference checkpoint).
        config: The architecture it was trained with (instrument, restframe grid, ``S``).

    Returns:
        The model, in eval mode, with every parameter set from ``state_dict``.

    Raises:
        ValueError: On a missing, unexpected or mis-shaped key, or a wavelength grid that
            disagrees with ``config``; the message names the key.
    """
    model = SpectrumAutoencoder(config)
    ours = model.state_dict()
    new: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in state_dict.items():
        if re.fullmatch(r"encoder\.conv\d\.0\.bias", key):
            continue
        if key == "decoder.wave_rest":
            expected = model.wave_rest.to(value.dtype)
            if value.shape != expected.shape or not torch.allclose(value.double(), model.wave_rest, rtol=1e-6):
                raise ValueError(
                    f"decoder.wave_rest: expected the restframe grid of config "
                    f"({config.restframe}), got {value.numel()} pixels from {value[0]:.2f} to {value[-1]:.2f} A"
                )
            continue
        if key == "encoder.instrument.wave_obs":
            if value.numel() != model.instrument.n_pixels or not torch.allclose(
                value.double(), model.wave_obs, rtol=1e-5
            ):
                raise ValueError(
                    f"encoder.instrument.wave_obs: expected the {model.instrument.name} grid "
                    f"({model.instrument.n_pixels} pixels), got {value.numel()} pixels"
                )
            continue
        if key == "encoder.instrument.lsf.weight":
            if model.lsf is None:
                raise ValueError("encoder.instrument.lsf.weight: the reference has an LSF; set config.lsf_sigma")
            new["lsf"] = value.flatten().flip(0)
            continue
        target = _ref_to_ours(key)
        if target is None or target not in ours:
            unexpected.append(key)
            continue
        if ours[target].shape != value.shape:
            raise ValueError(
                f"{key}: expected shape {tuple(ours[target].shape)} for {target}, got {tuple(value.shape)}"
            )
        new[target] = value
    if unexpected:
        raise ValueError(f"unexpected key(s) in spender state dict: {unexpected}")
    missing = sorted(set(ours) - set(new))
    if missing:
        raise ValueError(f"missing key(s) in spender state dict for speculum parameters: {missing}")
    model.load_state_dict(new, strict=True)
    return model.eval()


def to_spender_state_dict(model: SpectrumAutoencoder) -> dict[str, torch.Tensor]:
    """Reference ``spender`` state dict of ``model`` (conv biases zero), the inverse mapping."""
    out: dict[str, torch.Tensor] = {}
    for i, block in enumerate(model.encoder.blocks, start=1):
        out[f"encoder.conv{i}.0.weight"] = block.weight.detach().clone()
        out[f"encoder.conv{i}.0.bias"] = torch.zeros(block.weight.shape[0], dtype=block.weight.dtype)
        out[f"encoder.conv{i}.2.weight"] = block.prelu.weight.detach().clone()
    for part in ("encoder", "decoder"):
        for key, value in getattr(model, part).mlp.state_dict().items():
            idx, name = key.split(".", 1)
            layer, slot = divmod(int(idx), 2)
            out[f"{part}.mlp.{3 * layer + slot}.{name}"] = value.clone()
    out["decoder.wave_rest"] = model.wave_rest.float().clone()
    out["encoder.instrument.wave_obs"] = model.wave_obs.float().clone()
    if model.lsf is not None:
        out["encoder.instrument.lsf.weight"] = model.lsf.detach().flip(0).reshape(1, 1, -1).clone()
    return out
