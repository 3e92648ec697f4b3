"""Bijector-style transforms and normalising flows built on NumPyro's ``Transform``."""

from numpyro_ext.transforms.affine import Affine, Scale, Shift
from numpyro_ext.transforms.autoregressive import MaskedAutoregressive
from numpyro_ext.transforms.banana import Banana, banana_distribution
from numpyro_ext.transforms.bijector import Bijector, Chain, Inline, Invert, as_bijector
from numpyro_ext.transforms.conditioners import MADE, MLP, Conditioner, as_conditioner
from numpyro_ext.transforms.coupling import AffineCoupling, Coupling, SplineCoupling
from numpyro_ext.transforms.flows import masked_autoregressive_flow, neural_spline_flow
from numpyro_ext.transforms.householder import Householder, householder_matrix
from numpyro_ext.transforms.monotone_inverse import solve_increasing
from numpyro_ext.transforms.permute import Permute
from numpyro_ext.transforms.planar import Planar
from numpyro_ext.transforms.radial import Radial
from numpyro_ext.transforms.scan import UNROLL_DEPTH, Scan
from numpyro_ext.transforms.spline import RationalQuadraticSpline
from numpyro_ext.transforms.sylvester import Sylvester

__all__: list[str] = [
    "MADE",
    "MLP",
    "UNROLL_DEPTH",
    "Affine",
    "AffineCoupling",
    "Banana",
    "Bijector",
    "Chain",
    "Conditioner",
    "Coupling",
    "Householder",
    "Inline",
    "Invert",
    "MaskedAutoregressive",
    "Permute",
    "Planar",
    "Radial",
    "RationalQuadraticSpline",
    "Scale",
    "Scan",
    "Shift",
    "SplineCoupling",
    "Sylvester",
    "as_bijector",
    "as_conditioner",
    "banana_distribution",
    "householder_matrix",
    "masked_autoregressive_flow",
    "neural_spline_flow",
    "solve_increasing",
]
