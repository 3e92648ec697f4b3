"""What the Pólya-gamma MCMC kernels share: a model, its augmentation, and MCMC's plumbing.

:class:`AugmentedModelKernel` holds the fields every Pólya-gamma kernel has (the model, the
augmented sites, whether the auxiliaries are returned, whether the structure is checked) and
implements the parts of ``numpyro.infer.mcmc.MCMCKernel`` that do not depend on how a kernel
sweeps: ``model``, ``sample_field``, ``default_fields``, ``get_constrain_fn``,
``postprocess_fn`` (the model's deterministic sites) and ``wrap_model``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable

import jax
import numpy as np
from numpyro import handlers
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import not_jax_tracer

from numpyro_ext.handlers import polya_gamma
from numpyro_ext.infer.gaussian_block import BlockLayout
from numpyro_ext.infer.polya_gamma_sweep import check_approximate_above

__all__ = ["COSTLY_SWEEP_PIECES", "AugmentedModelKernel", "concrete"]

#: Exact Pólya-gamma series pieces per sweep above which ``init`` warns of the cost (the
#: compiled CPU sampler draws a few million pieces a second on one core).
COSTLY_SWEEP_PIECES = 1_000_000


def concrete(*trees) -> bool:
    """Whether every array in ``trees`` is concrete (not a tracer)."""
    return all(not_jax_tracer(x) for x in jax.tree.leaves(trees))


class AugmentedModelKernel(MCMCKernel):
    """Base of the Pólya-gamma kernels: the model, its augmentation and the shared plumbing.

    Subclasses implement ``init`` and ``sample`` and set ``self._layout`` in ``init``.

    :param model: the (un-augmented) model.
    :param sites: observed sites to augment (``None``: every supported one).
    :param auxiliaries: also return the Pólya-gamma auxiliaries in the samples.
    :param check: verify the conjugate structure at ``init`` (skipped under tracing).
    :param approximate_above: ``None`` (default): every Pólya-gamma draw exact, at a cost
        linear in its shape ``b``; a threshold ``>= 200``: shapes above it are drawn from a
        truncated gamma series, an approximation whose cost does not grow with ``b`` (see
        :func:`~numpyro_ext.infer.polya_gamma_sweep.sample_polya_gamma_large_shape`).
    """

    sample_field = "z"

    def __init__(
        self,
        model: Callable,
        *,
        sites: Iterable[str] | None = None,
        auxiliaries: bool = False,
        check: bool = True,
        approximate_above: float | None = None,
    ):
        name = type(self).__name__
        if not callable(model):
            raise ValueError(f"{name}: 'model' must be callable; got {type(model)}")
        if isinstance(sites, str):
            raise ValueError(f"{name}: 'sites' must be a list of site names; got {sites!r}")
        self._model = model
        self._sites = None if sites is None else tuple(sites)
        self._auxiliaries = auxiliaries
        self._check = check
        self._approximate_above = check_approximate_above(approximate_above, name)
        self._threshold = self._approximate_above
        self._layout: BlockLayout | None = None
        self._has_deterministic = True
        # MCMC re-runs ``init`` unless the kernel exposes a sample function (as HMC does)
        self._sample_fn = None

    @property
    def model(self) -> Callable:
        return self._model

    @property
    def default_fields(self) -> tuple[str, ...]:
        return ("z",)

    def _augmented(self, model: Callable | None = None) -> Callable:
        return polya_gamma(self._model if model is None else model, sites=self._sites)

    def _shape_threshold(self, layout: BlockLayout, b) -> float | None:
        """The ``approximate_above`` a sweep compiles with, from the shapes ``b`` at ``init``.

        ``None`` when no shape exceeds the threshold (the approximate path is not compiled).
        Exact draws are warned about when a sweep would sum more than
        :data:`COSTLY_SWEEP_PIECES` series pieces.
        """
        name = type(self).__name__
        if layout.unit_b:
            return None
        if not concrete(b):
            return self._approximate_above
        b = np.asarray(b, dtype=np.float64)
        b = b.reshape(-1, b.shape[-1])[0] if b.ndim else b.reshape(1)  # chains share b
        largest = float(np.max(b, initial=0.0))
        if self._approximate_above is not None:
            return self._approximate_above if largest > self._approximate_above else None
        pieces = float(np.sum(np.ceil(b[b > 0] / 2.0)))
        if pieces > COSTLY_SWEEP_PIECES:
            warnings.warn(
                f"{name}: Pólya-gamma shapes up to b = {largest:.4g} (large counts); exact "
                f"draws cost ceil(b / 2) series pieces each, {pieces:.3g} per sweep (of the "
                "order of a second per million pieces on one CPU core). approximate_above=1000 "
                "draws shapes above 1000 from a truncated gamma series at a cost independent "
                "of b (an approximation; see the Pólya-gamma augmentation documentation for "
                "its accuracy)",
                stacklevel=3,
            )
        return None

    def _require_init(self) -> BlockLayout:
        if self._layout is None:
            raise ValueError(f"{type(self).__name__}: call init before sample")
        return self._layout

    def _outputs(self, z, omega) -> dict:
        """The block's sites (and the auxiliaries when requested) from flat ``z`` and ``omega``."""
        out = self._layout.unravel(z)
        if self._auxiliaries:
            out.update(self._layout.unravel(omega, auxiliary=True))
        return out

    def _reset(self) -> None:
        """Forget what ``init`` learnt about the model (called on a re-bound copy)."""
        self._layout = None
        self._sample_fn = None

    def wrap_model(self, wrapper):
        kernel = copy.copy(self)
        kernel._model = wrapper(self._model)
        kernel._reset()
        return kernel

    def get_constrain_fn(self, model_args, model_kwargs):
        return lambda z: z

    def postprocess_fn(self, model_args, model_kwargs):
        """The latent values as they are, plus the model's ``deterministic`` sites."""
        kwargs = {} if model_kwargs is None else model_kwargs
        model = self._model
        if not self._has_deterministic:
            return lambda z: z

        def fn(z):
            seeded = handlers.seed(handlers.substitute(model, data=z), jax.random.key(0))
            tr = handlers.trace(seeded).get_trace(*model_args, **kwargs)
            det = {k: s["value"] for k, s in tr.items() if s["type"] == "deterministic"}
            return {**z, **det}

        return fn
