"""Exact, vectorised sampling of Pólya-gamma variates ``PG(b, c) = J*(b, |c| / 2) / 4``.

``J*(b, z)`` is infinitely divisible, so a draw is the sum of ``m = ceil(b / 2)`` independent
draws of ``J*(h, z)`` with ``h = b / m`` in ``(0, 2]``. Each piece is drawn by the series method
(Devroye 1986, ch. IV.5) from the tilted density ``cosh(z)^h exp(-z^2 x / 2) f(x | h)``:

* ``h = 1`` uses Devroye's sampler (Polson, Scott & Windle 2013, JASA): truncation ``t = 0.64``,
  left and right alternating series.
* any other ``h`` uses an alternate sampler in the spirit of Windle, Polson & Scott
  (arXiv:1405.0506, sec. 4): for ``x <= t`` the left series is monotone (``t`` below
  :func:`~numpyro_ext.distributions.polya_gamma_series.left_monotone_bound`) and bounded by its
  first term, an inverse-Gaussian (or truncated Lévy) kernel; for ``x > t`` the density is
  bounded by the gamma kernel ``(pi/2)^h x^(h-1) exp(-(pi^2/8 + z^2/2) x) / Gamma(h)`` times
  ``rho_h(t)`` when ``h < 1``, itself bounded by a shifted exponential, and the acceptance
  ratio uses the tilted-remainder factor ``rho_h(x)`` (error below ``1e-11`` for ``x >= 2.9``).

:func:`sample_polya_gamma` is the entry point. On CPU it calls the compiled sampler
(``_polya_gamma_cpu.cc``, an XLA FFI custom call drawing from the same envelopes with per-element
branches) when the package was built with it; this module's pure-JAX sampler is the default on
other platforms and the reference the tests compare the compiled one with.

In the pure-JAX sampler every element runs the same masked proposal/accept step inside one
``lax.while_loop`` until all of its pieces are accepted; a proposal at ``x <= 0`` or a
non-finite one is rejected. Every loop is bounded: a non-finite or out-of-range ``b`` or a
non-finite ``c`` gives ``nan`` at once instead of a loop that never accepts,
and an element still unfinished after :data:`MAX_PROPOSALS_PER_PIECE` proposals per piece (far
beyond the one or two a piece needs on average) is returned as ``nan`` rather than hanging.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import gammaln, log_ndtr, ndtr, ndtri
from numpyro.util import not_jax_tracer

try:  # the compiled CPU sampler; absent when the package was installed without a C++ compiler
    from numpyro_ext.distributions import _polya_gamma_cpu
except ImportError:  # pragma: no cover - depends on the build
    _polya_gamma_cpu = None
from numpyro_ext.distributions.polya_gamma_series import (
    devroye_right_ratio,
    left_log_coefficients,
    left_monotone_bound,
    left_ratio,
    tail_coefficients,
    tail_factor,
)

__all__ = ["has_cpu_extension", "sample_polya_gamma"]

MAX_PIECE = 2.0
MIN_B = 1e-12  # below, float32 proposals underflow; no count-data model has b this small
MAX_B = 1e7  # work is linear in b: ceil(b / 2) pieces per draw
SAMPLER_LEFT_TERMS = 8  # a_8 / a_0 < 1e-17 for x <= t <= 3, h <= 2
DEVROYE_T = 0.64
_COMPACTION = 8  # straggler buffer = elements / _COMPACTION
_MIN_COMPACTION_SIZE = 8192  # below this, one loop over all elements is cheaper
_HALF_PI_SQ = math.pi**2 / 8.0
MAX_PROPOSALS_PER_PIECE = 64  # loop bound: steps <= 64 * max(pieces) + 64


def _truncation(h):
    """Split point between the left and right envelopes, in ``J*`` scale."""
    alternate = jnp.minimum(left_monotone_bound(h), 3.0)
    return jnp.where(h == 1.0, DEVROYE_T, alternate)


def _envelope(h, z, devroye_only: bool):
    """Per-element constants of the mixture envelope (all computed once, outside the loop)."""
    t = _truncation(h)
    lam = _HALF_PI_SQ + 0.5 * z * z
    lam_right = lam - jnp.maximum(h - 1.0, 0.0) / t
    if devroye_only:
        coefficients = jnp.ones((*h.shape, 1), h.dtype)
        bound = jnp.ones_like(h)
    else:
        coefficients = tail_coefficients(h)
        bound = jnp.where(h < 1.0, tail_factor(t, coefficients), 1.0)
    log_levy = (h + 1.0) * math.log(2.0) + log_ndtr(-h / jnp.sqrt(t))
    log_ig = h * math.log(2.0) - h * z
    use_ig = (log_ig < log_levy) & (z > 0)
    log_left = jnp.where(use_ig, log_ig, log_levy)
    log_right = (
        h * math.log(math.pi / 2)
        + jnp.log(bound)
        - gammaln(h)
        + (h - 1.0) * jnp.log(t)
        - lam * t
        - jnp.log(lam_right)
    )
    return dict(
        h=h,
        z=z,
        t=t,
        lam=lam,
        lam_right=lam_right,
        bound=bound,
        use_ig=use_ig,
        p_left=jax.nn.sigmoid(log_left - log_right),
        levy_tail=ndtr(-h / jnp.sqrt(t)),
        left_coefficients=left_log_coefficients(h, SAMPLER_LEFT_TERMS),
        tail_coefficients=coefficients,
    )


def _propose_left(u_normal, u_choice, env):
    """A draw from the left kernel: inverse Gaussian IG(h/z, h^2) or Lévy truncated to x < t.

    Both use one normal variate, ``ndtri(u_normal)``; ``u_choice`` is the IG's coin.
    """
    h, z = env["h"], env["z"]
    # Inverse Gaussian (Michael, Schucany & Haas 1976) in a cancellation-free form.
    mu = h / jnp.maximum(z, jnp.finfo(h.dtype).tiny)
    y = jnp.square(ndtri(u_normal))
    r = mu * y / (2.0 * h * h)
    x_small = mu / (1.0 + r + jnp.sqrt(r * (r + 2.0)))
    keep = u_choice * (mu + x_small) <= mu
    x_ig = jnp.where(keep, x_small, mu * mu / x_small)
    # Lévy: x = h^2 / N^2 with |N| > h / sqrt(t), i.e. x < t.
    n = -ndtri(u_normal * env["levy_tail"])
    x_levy = jnp.square(h / n)
    return jnp.where(env["use_ig"], x_ig, x_levy)


def _accept_left(x, u, env):
    """Series test ``u * envelope(x) <= target(x)`` for ``x <= t``."""
    h, z = env["h"], env["z"]
    tilt = jnp.where(env["use_ig"], 1.0, jnp.exp(-0.5 * z * z * x))
    ok = (x <= env["t"]) & (x > 0)
    return ok & (u <= tilt * left_ratio(x, h, env["left_coefficients"]))


def _accept_right(x, u, env, devroye_only: bool):
    """Test for ``x > t`` against the shifted-exponential envelope."""
    h, t = env["h"], env["t"]
    devroye = devroye_right_ratio(x)
    if devroye_only:
        return jnp.isfinite(x) & (u <= devroye)
    alternate = tail_factor(x, env["tail_coefficients"]) / env["bound"]
    log_shape = (h - 1.0) * jnp.log(x / t) - (env["lam"] - env["lam_right"]) * (x - t)
    shape = jnp.exp(log_shape)
    ratio = jnp.where(h == 1.0, devroye, shape * alternate)
    return jnp.isfinite(x) & (u <= ratio)


def _step_bound(pieces):
    """Most loop steps any element may need: a safety bound, far above the expected count."""
    most = jnp.max(pieces, initial=0).astype(jnp.uint32)
    return MAX_PROPOSALS_PER_PIECE * (most + 1)


def _rejection_loop(key, env, remaining, total, devroye_only: bool, max_steps, busy_at_most=0):
    """Masked proposal/accept steps until at most ``busy_at_most`` elements have pieces left,
    or ``max_steps`` steps have run.
    """

    def cond(state):
        busy = jnp.sum(state[1] > 0)
        return (busy > busy_at_most) & (state[0] < max_steps)

    def body(state):
        step, remaining, total = state
        h = env["h"]
        tiny = jnp.finfo(h.dtype).tiny
        u_side, u_proposal, u = jax.random.uniform(
            jax.random.fold_in(key, step), (3, *h.shape), h.dtype, minval=tiny
        )
        left = u_side < env["p_left"]
        # Given the side, u_side / p_left is again uniform: it is the inverse Gaussian's coin.
        u_choice = jnp.clip(u_side / env["p_left"], tiny, 1.0)
        x_right = env["t"] - jnp.log(u_proposal) / env["lam_right"]
        x = jnp.where(left, _propose_left(u_proposal, u_choice, env), x_right)
        accepted = jnp.where(left, _accept_left(x, u, env), _accept_right(x, u, env, devroye_only))
        accepted = accepted & (remaining > 0)
        return step + 1, remaining - accepted, total + jnp.where(accepted, x, 0.0)

    state = (jnp.zeros((), jnp.uint32), remaining, total)
    _, remaining, total = lax.while_loop(cond, body, state)
    return remaining, total


def _unfinished_to_nan(remaining, total):
    return jnp.where(remaining > 0, jnp.nan, total)


def sample_jacobi_star(key, h, z, pieces, devroye_only: bool = False):
    """Sum of ``pieces`` independent ``J*(h, z)`` draws, elementwise (flat arrays).

    :param key: a JAX PRNG key.
    :param h: piece shape in ``(0, 2]``, one per element (1-d).
    :param z: tilt ``z >= 0``, one per element.
    :param pieces: number of pieces per element (integer array).
    :param devroye_only: promise that every ``h`` is 1 (skips the alternate sampler's setup).
    :return: the sums, same shape as ``h``.
    """
    env = _envelope(h, z, devroye_only)
    bound = _step_bound(pieces)
    remaining, total = _finish(key, env, pieces, jnp.zeros_like(h), devroye_only, bound)
    return _unfinished_to_nan(remaining, total)


def _finish(key, env, remaining, total, devroye_only: bool, bound):
    """Run the rejection loop until every element is done (or ``bound`` steps have run).

    Steps run over all elements only until the unfinished ones fit in a buffer of an eighth of
    the size (a single step for ``PG(1, c)``, which accepts about 90% of proposals); the
    stragglers are then gathered into the buffer and finished there, recursively, so the long
    tail of the loop never costs full passes over every element.
    """
    size = remaining.shape[0]
    if size < _MIN_COMPACTION_SIZE:
        return _rejection_loop(key, env, remaining, total, devroye_only, bound)
    buffer = size // _COMPACTION
    remaining, total = _rejection_loop(
        jax.random.fold_in(key, 0), env, remaining, total, devroye_only, bound, buffer
    )

    def cond(state):
        return jnp.any(state[1] > 0)

    def body(state):
        round_, remaining, total = state
        (idx,) = jnp.nonzero(remaining > 0, size=buffer, fill_value=size)
        valid = idx < size
        sub_env = jax.tree.map(lambda a: jnp.take(a, idx, axis=0, mode="clip"), env)
        sub_remaining = jnp.where(valid, jnp.take(remaining, idx, mode="clip"), 0)
        sub_remaining, sub_total = _finish(
            jax.random.fold_in(key, round_),
            sub_env,
            sub_remaining,
            jnp.zeros_like(sub_env["h"]),
            devroye_only,
            bound,
        )
        total = total.at[idx].add(_unfinished_to_nan(sub_remaining, sub_total), mode="drop")
        remaining = remaining.at[idx].set(0, mode="drop")
        return round_ + 1, remaining, total

    state = (jnp.ones((), jnp.uint32), remaining, total)
    _, remaining, total = lax.while_loop(cond, body, state)
    return remaining, total


def _known_all_devroye(b):
    """Whether every piece has shape 1, decided at trace time when ``b`` is concrete (else None).

    Deciding here compiles one sampler instead of both branches of a ``lax.cond``.
    """
    if not not_jax_tracer(b):
        return None
    b = np.asarray(b, dtype=np.float64)
    return bool(np.all(b / np.ceil(b / MAX_PIECE) == 1.0))


def _sample_jax(key, b, z, known_devroye):
    """The pure-JAX sampler on flat arrays (``b`` valid, ``z >= 0``); ``J*`` scale."""
    pieces = jnp.ceil(b / MAX_PIECE)
    h = b / pieces
    pieces = pieces.astype(jnp.int32)
    if known_devroye is not None:
        return sample_jacobi_star(key, h, z, pieces, devroye_only=known_devroye)
    return lax.cond(
        jnp.all(h == 1.0),
        lambda: sample_jacobi_star(key, h, z, pieces, devroye_only=True),
        lambda: sample_jacobi_star(key, h, z, pieces, devroye_only=False),
    )


_FFI_TARGETS = {jnp.dtype(jnp.float32): "numpyro_ext_polya_gamma_f32"}
_FFI_TARGETS[jnp.dtype(jnp.float64)] = "numpyro_ext_polya_gamma_f64"
_registered = False


def has_cpu_extension() -> bool:
    """Whether the compiled CPU sampler was built (it needs a C++ compiler at install time)."""
    return _polya_gamma_cpu is not None


def _register_cpu_targets() -> None:
    global _registered
    if not _registered:
        for dtype, handler in (
            (jnp.float32, _polya_gamma_cpu.handler_f32),
            (jnp.float64, _polya_gamma_cpu.handler_f64),
        ):
            jax.ffi.register_ffi_target(_FFI_TARGETS[jnp.dtype(dtype)], handler(), platform="cpu")
        _registered = True


def _sample_cpu(key, b, z):
    """The compiled sampler (an XLA FFI custom call) on flat arrays; ``J*`` scale.

    One ``(2,)`` seed per call (two 32-bit words drawn from ``key``) starts a xoshiro256++
    stream. ``vmap`` broadcasts every operand to the batch (``vmap_method="broadcast_all"``),
    so each batch row gets its own seed: a vmapped call draws, row by row, exactly what
    unbatched calls with the same keys draw.
    """
    _register_cpu_targets()
    seed = jax.random.bits(key, (2,), jnp.uint32)
    call = jax.ffi.ffi_call(
        _FFI_TARGETS[b.dtype],
        jax.ShapeDtypeStruct(b.shape, b.dtype),
        vmap_method="broadcast_all",
    )
    return call(seed, b, z)


def sample_polya_gamma(key, b, c, shape=None, *, implementation: str = "auto"):
    """Exact draws of ``PG(b, c)``, broadcast over ``b``, ``c`` and ``shape``.

    ``PG(b, c) = J*(b, |c|/2) / 4``, drawn as a sum of ``ceil(b/2)`` series-method pieces
    (Devroye 2009; Windle, Polson & Scott, arXiv:1405.0506). Works under ``jit`` and ``vmap``,
    in float32 and float64. Elements with ``b`` outside ``[MIN_B, MAX_B]`` or a non-finite ``b``
    or ``c`` come back as ``nan`` (validate concrete arguments with
    :class:`~numpyro_ext.distributions.PolyaGamma`, which raises).

    :param key: a JAX PRNG key.
    :param b: shape parameter, ``MIN_B <= b <= MAX_B``, any shape broadcastable with ``c``.
    :param c: tilting parameter, real.
    :param shape: output shape (default: the broadcast shape of ``b`` and ``c``); ``b`` and ``c``
        must broadcast to it.
    :param implementation: ``"auto"`` (the compiled sampler on CPU when it was built, the
        pure-JAX sampler on other platforms), ``"jax"`` (pure JAX everywhere) or ``"cpu"``
        (the compiled sampler; CPU only).
    :return: draws of ``shape`` in the floating dtype of ``b`` and ``c``.

    >>> import jax
    >>> from numpyro_ext.distributions import sample_polya_gamma
    >>> sample_polya_gamma(jax.random.key(0), 1.0, jax.numpy.array([0.0, 2.0])).shape
    (2,)
    """
    if implementation not in ("auto", "jax", "cpu"):
        raise ValueError(
            f"sample_polya_gamma: implementation must be 'auto', 'jax' or 'cpu'; "
            f"got {implementation!r}"
        )
    if implementation == "cpu" and not has_cpu_extension():
        raise RuntimeError(
            "sample_polya_gamma: the compiled CPU sampler is not built; reinstall the package "
            "with a C++ compiler available, or use implementation='jax'"
        )
    if shape is None:
        shape = jnp.broadcast_shapes(jnp.shape(b), jnp.shape(c))
    shape = tuple(shape)
    known_devroye = _known_all_devroye(b)
    dtype = jnp.result_type(b, c, float)
    b = jnp.broadcast_to(jnp.asarray(b, dtype), shape).reshape(-1)
    z = 0.5 * jnp.abs(jnp.broadcast_to(jnp.asarray(c, dtype), shape).reshape(-1))
    valid = jnp.isfinite(z) & (b >= MIN_B) & (b <= MAX_B)
    b, z = jnp.where(valid, b, 1.0), jnp.where(valid, z, 0.0)

    def pure_jax():
        return _sample_jax(key, b, z, known_devroye)

    if implementation == "jax" or not has_cpu_extension():
        draws = pure_jax()
    elif implementation == "cpu":
        draws = _sample_cpu(key, b, z)
    else:
        draws = lax.platform_dependent(cpu=lambda: _sample_cpu(key, b, z), default=pure_jax)
    return jnp.where(valid, 0.25 * draws, jnp.nan).reshape(shape)
