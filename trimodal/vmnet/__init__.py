"""VM-NET (Hong et al. 2018, as re-examined by Prétet et al.): cross-modal music-video
retrieval from precomputed features (docs/research.md#the-vm-net-study).

* :mod:`trimodal.vmnet.config` — the run's typed settings (:class:`VMNetConfig`, YAML);
* :mod:`trimodal.vmnet.model` — the two-branch network, a transformers ``PreTrainedModel``
  (music 2048-1024-512, video 2048-512, final batch norm, L2-normalised outputs);
* :mod:`trimodal.vmnet.features` — per-split feature files;
* :mod:`trimodal.vmnet.extractors` — the feature extractors, in a registry by name (musicnn,
  CLAP, handcrafted librosa statistics of :mod:`trimodal.vmnet.handcrafted`; R(2+1)D,
  VideoMAE; precomputed arrays), run by :mod:`trimodal.vmnet.extraction`;
* :mod:`trimodal.vmnet.training` — training on the ``vmnet_triplet`` objective with the best
  dev checkpoint;
* :mod:`trimodal.vmnet.evaluation` — whole-set retrieval evaluation;
* ``python -m trimodal.vmnet features|train|evaluate`` — the command line.
"""

from trimodal.vmnet.config import VMNetConfig, load_vmnet_config
from trimodal.vmnet.evaluation import evaluate_vmnet, results_markdown, retrieval_results
from trimodal.vmnet.extraction import ExtractionOptions, extract_features, write_features
from trimodal.vmnet.extractors import (
    ExtractorSettings,
    ExtractorSpec,
    build_extractor,
    extractor_names,
    register_extractor,
)
from trimodal.vmnet.features import FeatureFileError, FeatureSet, load_features, save_features
from trimodal.vmnet.handcrafted import (
    HandcraftedOptions,
    handcrafted_dim,
    handcrafted_feature_names,
    handcrafted_features,
)
from trimodal.vmnet.model import VMNet, VMNetBranch, VMNetModelConfig, VMNetOutput, build_vmnet
from trimodal.vmnet.training import train_vmnet

__all__ = [
    "ExtractionOptions",
    "ExtractorSettings",
    "ExtractorSpec",
    "FeatureFileError",
    "FeatureSet",
    "HandcraftedOptions",
    "VMNet",
    "VMNetBranch",
    "VMNetConfig",
    "VMNetModelConfig",
    "VMNetOutput",
    "build_extractor",
    "build_vmnet",
    "evaluate_vmnet",
    "extract_features",
    "extractor_names",
    "handcrafted_dim",
    "handcrafted_feature_names",
    "handcrafted_features",
    "load_features",
    "load_vmnet_config",
    "register_extractor",
    "results_markdown",
    "retrieval_results",
    "save_features",
    "train_vmnet",
    "write_features",
]
