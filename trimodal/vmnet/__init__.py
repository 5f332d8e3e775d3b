"""VM-NET (Hong et al. 2018, as re-examined in seed 003): cross-modal music-video retrieval
from precomputed features.

* :mod:`trimodal.vmnet.model` — the two-branch network (music 2048-1024-512, video 2048-512,
  final batch norm, L2-normalised outputs);
* :mod:`trimodal.vmnet.features` — per-split feature files and their extraction (musicnn, CLAP,
  handcrafted librosa statistics; R(2+1)D, VideoMAE; precomputed arrays);
* :mod:`trimodal.vmnet.training` — training on the ``vmnet_triplet`` objective with the best dev
  checkpoint, and whole-set retrieval evaluation;
* ``python -m trimodal.vmnet features|train|evaluate`` — the command line.
"""

from trimodal.vmnet.config import VMNetConfig, load_vmnet_config
from trimodal.vmnet.features import (
    FeatureSet,
    HandcraftedOptions,
    extract_features,
    handcrafted_dim,
    handcrafted_feature_names,
    handcrafted_features,
    load_features,
    save_features,
)
from trimodal.vmnet.model import VMNet, VMNetBranch
from trimodal.vmnet.training import evaluate_vmnet, retrieval_results, train_vmnet

__all__ = [
    "FeatureSet",
    "HandcraftedOptions",
    "VMNet",
    "VMNetBranch",
    "VMNetConfig",
    "evaluate_vmnet",
    "extract_features",
    "handcrafted_dim",
    "handcrafted_feature_names",
    "handcrafted_features",
    "load_features",
    "load_vmnet_config",
    "retrieval_results",
    "save_features",
    "train_vmnet",
]
