"""Inference algorithms NumPyro lacks: MCMC kernels, fitting procedures, objectives, scale-out."""

from numpyro_ext.infer.adversarial import (
    AdversarialELBO,
    ImplicitLatent,
    adversarial_optimizer,
    is_critic_param,
)
from numpyro_ext.infer.checkpoint import load_checkpoint, restore_svi, save_checkpoint
from numpyro_ext.infer.collapsed_gibbs import (
    CollapsedPolyaGammaGibbs,
    CollapsedPolyaGammaGibbsState,
)
from numpyro_ext.infer.density_ratio import (
    DensityRatioFit,
    KLEstimate,
    RatioCheck,
    check_log_ratio,
    fit_density_ratio,
    kl_estimate,
    logistic_ratio_loss,
)
from numpyro_ext.infer.polya_gamma_gibbs import PolyaGammaGibbs, PolyaGammaGibbsState
from numpyro_ext.infer.polya_gamma_local import PolyaGammaLocalFit, polya_gamma_local_vi
from numpyro_ext.infer.posterior_estimation import (
    AmortizedPosterior,
    PosteriorFit,
    coverage,
    default_spline_flow,
)
from numpyro_ext.infer.sharding import (
    chain_keys,
    data_mesh,
    local_rows,
    replicate,
    shard_batch,
    shard_batches,
)

__all__: list[str] = [
    "AdversarialELBO",
    "AmortizedPosterior",
    "CollapsedPolyaGammaGibbs",
    "CollapsedPolyaGammaGibbsState",
    "DensityRatioFit",
    "ImplicitLatent",
    "KLEstimate",
    "PolyaGammaGibbs",
    "PolyaGammaGibbsState",
    "PolyaGammaLocalFit",
    "PosteriorFit",
    "RatioCheck",
    "adversarial_optimizer",
    "chain_keys",
    "check_log_ratio",
    "coverage",
    "data_mesh",
    "default_spline_flow",
    "fit_density_ratio",
    "is_critic_param",
    "kl_estimate",
    "load_checkpoint",
    "local_rows",
    "logistic_ratio_loss",
    "polya_gamma_local_vi",
    "replicate",
    "restore_svi",
    "save_checkpoint",
    "shard_batch",
    "shard_batches",
]
