"""Networks only: the SPENDER encoder, decoder and autoencoder, and reference weights."""

from speculum.models.autoencoder import AutoencoderOutput, SpectrumAutoencoder, SpectrumDecoder
from speculum.models.config import AutoencoderConfig, RestframeGrid, config_from_dict
from speculum.models.encoder import SpectrumEncoder, inpaint_masked
from speculum.models.layers import MLP, SpeculatorActivation
from speculum.models.spender_compat import from_spender_state_dict, to_spender_state_dict

__all__ = [
    "MLP",
    "AutoencoderConfig",
    "AutoencoderOutput",
    "RestframeGrid",
    "SpectrumAutoencoder",
    "SpectrumDecoder",
    "SpectrumEncoder",
    "SpeculatorActivation",
    "config_from_dict",
    "from_spender_state_dict",
    "inpaint_masked",
    "to_spender_state_dict",
]
