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

from trimodal.utils import lazy_exports

# Imported on first use, so that importing the package (and its command-line help)
# stays cheap.
__getattr__ = lazy_exports(
    __name__,
    {
        "VMNetConfig": "trimodal.vmnet.config",
        "load_vmnet_config": "trimodal.vmnet.config",
        "evaluate_vmnet": "trimodal.vmnet.evaluation",
        "results_markdown": "trimodal.vmnet.evaluation",
        "retrieval_results": "trimodal.vmnet.evaluation",
        "ExtractionOptions": "trimodal.vmnet.extraction",
        "extract_features": "trimodal.vmnet.extraction",
        "write_features": "trimodal.vmnet.extraction",
        "ExtractorSettings": "trimodal.vmnet.extractors",
        "ExtractorSpec": "trimodal.vmnet.extractors",
        "build_extractor": "trimodal.vmnet.extractors",
        "extractor_names": "trimodal.vmnet.extractors",
        "register_extractor": "trimodal.vmnet.extractors",
        "FeatureFileError": "trimodal.vmnet.features",
        "FeatureSet": "trimodal.vmnet.features",
        "load_features": "trimodal.vmnet.features",
        "save_features": "trimodal.vmnet.features",
        "HandcraftedOptions": "trimodal.vmnet.handcrafted",
        "handcrafted_dim": "trimodal.vmnet.handcrafted",
        "handcrafted_feature_names": "trimodal.vmnet.handcrafted",
        "handcrafted_features": "trimodal.vmnet.handcrafted",
        "VMNet": "trimodal.vmnet.model",
        "VMNetBranch": "trimodal.vmnet.model",
        "VMNetModelConfig": "trimodal.vmnet.model",
        "VMNetOutput": "trimodal.vmnet.model",
        "build_vmnet": "trimodal.vmnet.model",
        "train_vmnet": "trimodal.vmnet.training",
    },
)

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
