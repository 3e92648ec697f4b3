"""The Bijector vocabulary on top of NumPyro's ``Transform``.

A bijector \\(f\\) maps ``x`` to ``y = f(x)`` and knows its log-determinant
\\(\\log|\\det J_f(x)|\\). Subclasses implement one fused primitive per direction,
``_forward_and_log_det`` and ``_inverse_and_log_det`` (distrax style); everything else
(``forward``, ``inverse``, the log-dets with an ``event_ndims`` argument as in TFP, the NumPyro
``Transform`` protocol: ``domain``/``codomain``, ``sign``, ``tree_flatten``/``eq``) is
derived here, so every
:class:`Bijector` is accepted wherever NumPyro takes a transform (``TransformedDistribution``,
``TransformReparam``, ``biject_to`` registrations, autoguides, ``Predictive``).

Log-dets follow TFP: the primitive returns the log-det of one event of
``forward_min_event_ndims`` dimensions (batch shape left); a public call with a larger
``event_ndims`` sums the extra rightmost dimensions.

Conventions worth knowing:

- :class:`Chain` follows TFP and distrax, ``Chain([f, g])(x) == f(g(x))``; NumPyro's
  ``ComposeTransform([g, f])`` is the same map (parts in application order).
- ``bijector.inv`` is an :class:`Invert`, itself a Bijector; NumPyro transforms can be wrapped
  with :func:`as_bijector` (``Chain`` and ``Invert`` do it for you).
- Every bijector is a pytree through NumPyro's own mechanism: ``Transform`` registers each
  subclass with its ``tree_flatten``/``tree_unflatten``; here the array attributes named in
  ``_leaves`` are the children and every other attribute is static. ``eq`` compares two
  bijectors structurally (same type, same static settings, equal arrays), so a bijector
  passed through ``jit`` equals itself.
- ``is_constant_jacobian`` is information (as in TFP), not a cache: log-dets are always
  computed from the parameters, so bijectors hold no mutable state.
- Conditional layers (couplings, autoregressive) carry a ``context`` array;
  ``bijector.conditioned(context)`` returns a copy bound to that context, and containers
  pass it on to their parts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform
from numpyro.distributions.util import array_equiv

__all__ = ["Bijector", "Chain", "Inline", "Invert", "as_bijector"]


def _real(event_ndims: int) -> constraints.Constraint:
    return (
        constraints.real
        if event_ndims == 0
        else constraints.independent(constraints.real, event_ndims)
    )


def _batch_shape(x, event_ndims: int) -> tuple[int, ...]:
    shape = jnp.shape(x)
    if len(shape) < event_ndims:
        raise ValueError(
            f"input has shape {shape} but the bijector needs at least {event_ndims} event "
            "dimension(s)"
        )
    return shape[: len(shape) - event_ndims]


def _reduce(log_det, extra_ndims: int, batch_shape: tuple[int, ...]):
    """Broadcast ``log_det`` to ``batch_shape`` and sum its ``extra_ndims`` rightmost axes."""
    log_det = jnp.asarray(log_det)
    full = jnp.broadcast_shapes(jnp.shape(log_det), batch_shape)
    log_det = jnp.broadcast_to(log_det, full)
    if extra_ndims == 0:
        return log_det
    return jnp.sum(log_det, axis=tuple(range(-extra_ndims, 0)))


def _is_tracer(value) -> bool:
    return isinstance(value, jax.core.Tracer)


def _with_event_dim(constraint: constraints.Constraint, event_dim: int):
    """``constraint`` reinterpreted over ``event_dim`` dimensions (as ComposeTransform does)."""
    extra = event_dim - constraint.event_dim
    return constraint if extra <= 0 else constraints.independent(constraint, extra)


class Bijector(Transform):
    """Base class: a differentiable bijection with a tractable log-determinant.

    Subclasses set ``forward_min_event_ndims`` (and ``inverse_min_event_ndims`` when it
    differs), list their array attributes in ``_leaves`` (the pytree children; every other
    attribute is static) and implement ``_forward_and_log_det(x)`` and, when an inverse
    exists, ``_inverse_and_log_det(y)``.

    :cvar is_constant_jacobian: the log-det does not depend on the input (information for
        callers, as in TFP; nothing is cached).

    >>> import jax.numpy as jnp
    >>> from numpyro_ext.transforms import Shift
    >>> Shift(1.0).forward_and_log_det(jnp.zeros(2))
    (Array([1., 1.], dtype=float32), Array([0., 0.], dtype=float32))
    """

    forward_min_event_ndims: int = 0
    inverse_min_event_ndims: int | None = None
    is_constant_jacobian: bool = False
    _leaves: tuple[str, ...] = ()

    # --- what subclasses implement -------------------------------------------------------
    def _forward_and_log_det(self, x):
        raise NotImplementedError

    def _inverse_and_log_det(self, y):
        raise NotImplementedError(f"{type(self).__name__} does not implement an inverse")

    def _forward_log_det(self, x):
        return self._forward_and_log_det(x)[1]

    def _inverse_log_det(self, y):
        return self._inverse_and_log_det(y)[1]

    # --- event dimensions ----------------------------------------------------------------
    @property
    def event_ndims_in(self) -> int:
        return self.forward_min_event_ndims

    @property
    def event_ndims_out(self) -> int:
        if self.inverse_min_event_ndims is None:
            return self.forward_min_event_ndims
        return self.inverse_min_event_ndims

    @property
    def domain(self) -> constraints.Constraint:
        return _real(self.event_ndims_in)

    @property
    def codomain(self) -> constraints.Constraint:
        return _real(self.event_ndims_out)

    def _check_event_ndims(self, event_ndims: int | None, minimum: int, name: str) -> int:
        if event_ndims is None:
            return minimum
        if event_ndims < minimum:
            raise ValueError(
                f"{type(self).__name__}: {name} must be >= {minimum}, got {event_ndims}"
            )
        return event_ndims

    # --- public API -------------------------------------------------------------------------
    def forward(self, x):
        """\\(y = f(x)\\)."""
        return self._forward_and_log_det(x)[0]

    def inverse(self, y):
        """\\(x = f^{-1}(y)\\)."""
        return self._inverse_and_log_det(y)[0]

    def forward_and_log_det(self, x):
        """Fused \\((f(x), \\log|\\det J_f(x)|)\\), log-det over the minimal event."""
        y, log_det = self._forward_and_log_det(x)
        return y, _reduce(log_det, 0, _batch_shape(x, self.event_ndims_in))

    def inverse_and_log_det(self, y):
        """Fused \\((f^{-1}(y), \\log|\\det J_{f^{-1}}(y)|)\\)."""
        x, log_det = self._inverse_and_log_det(y)
        return x, _reduce(log_det, 0, _batch_shape(y, self.event_ndims_out))

    def forward_log_det_jacobian(self, x, event_ndims: int | None = None):
        """\\(\\log|\\det J_f(x)|\\), summed over ``event_ndims`` rightmost dimensions.

        :param x: input.
        :param event_ndims: number of event dimensions of ``x`` (default: the minimum).
        """
        nd = self._check_event_ndims(event_ndims, self.event_ndims_in, "event_ndims")
        log_det = self._forward_log_det(x)
        return _reduce(log_det, nd - self.event_ndims_in, _batch_shape(x, self.event_ndims_in))

    def inverse_log_det_jacobian(self, y, event_ndims: int | None = None):
        """\\(\\log|\\det J_{f^{-1}}(y)|\\), summed over ``event_ndims`` rightmost dims.

        :param y: output of the forward map.
        :param event_ndims: number of event dimensions of ``y`` (default: the minimum).
        """
        nd = self._check_event_ndims(event_ndims, self.event_ndims_out, "event_ndims")
        log_det = self._inverse_log_det(y)
        return _reduce(log_det, nd - self.event_ndims_out, _batch_shape(y, self.event_ndims_out))

    def conditioned(self, context) -> Bijector:
        """Return this bijector bound to ``context`` (a no-op for unconditional bijectors)."""
        return self

    def forward_event_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Alias of :meth:`forward_shape` (TFP name)."""
        return self.forward_shape(shape)

    def inverse_event_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Alias of :meth:`inverse_shape` (TFP name)."""
        return self.inverse_shape(shape)

    # --- NumPyro Transform protocol -----------------------------------------------------
    def __call__(self, x):
        return self.forward(x)

    def _inverse(self, y):
        return self.inverse(y)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        if intermediates is not None:
            return intermediates
        return self.forward_log_det_jacobian(x)

    def call_with_intermediates(self, x):
        return self.forward_and_log_det(x)

    @property
    def inv(self) -> Bijector:
        return Invert(self)

    # --- pytree (NumPyro's mechanism: Transform registers every subclass) -------------------
    def tree_flatten(self):
        children = tuple(getattr(self, name) for name in self._leaves)
        static = tuple(
            sorted(
                (k, v) for k, v in self.__dict__.items() if k not in self._leaves and k != "_inv"
            )
        )
        return children, (self._leaves, static)

    @classmethod
    def tree_unflatten(cls, aux_data, children):
        names, static = aux_data
        obj = cls.__new__(cls)
        obj.__dict__.update(static)
        obj.__dict__.update(zip(names, children, strict=True))
        return obj

    def eq(self, other: object, static: bool = False):
        """Structural equality: same type, same static settings, equal array leaves.

        :param other: the object compared with.
        :param static: return a Python bool (concrete arrays compared by value, traced ones
            count as different); otherwise an array that may be traced. ``==`` uses it.
        """
        if type(self) is not type(other):
            return False
        mine, theirs = jax.tree.flatten(self), jax.tree.flatten(other)
        if mine[1] != theirs[1] or len(mine[0]) != len(theirs[0]):
            return False
        equal = True
        for a, b in zip(mine[0], theirs[0], strict=True):
            if jnp.shape(a) != jnp.shape(b):
                return False
            if static:
                if _is_tracer(a) or _is_tracer(b) or not np.array_equiv(a, b):
                    return False
                continue
            equal = equal & array_equiv(a, b)
        return equal

    def replace(self, **changes) -> Bijector:
        """A copy with some attributes replaced."""
        children, aux_data = self.tree_flatten()
        new = type(self).tree_unflatten(aux_data, children)
        new.__dict__.update(changes)
        return new

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Inline(Bijector):
    """A bijector built from plain functions (TFP's ``Inline``, distrax's ``Lambda``).

    Give at least one of ``inverse_log_det_jacobian_fn`` / ``forward_log_det_jacobian_fn``;
    the other follows from \\(\\log|J_{f^{-1}}(y)| = -\\log|J_f(f^{-1}(y))|\\).

    :param forward_fn: \\(x \\mapsto y\\).
    :param inverse_fn: \\(y \\mapsto x\\) (optional; needed for ``inverse``).
    :param inverse_log_det_jacobian_fn: \\(y \\mapsto \\log|\\det J_{f^{-1}}(y)|\\) over the
        minimal event.
    :param forward_log_det_jacobian_fn: \\(x \\mapsto \\log|\\det J_f(x)|\\).
    :param forward_min_event_ndims: event dimensions of ``x``.
    :param inverse_min_event_ndims: event dimensions of ``y`` (default: the same).
    :param is_constant_jacobian: whether the log-det is input independent.
    :param forward_shape_fn: event-shape map for shape-changing bijectors.
    :param inverse_shape_fn: its inverse.
    :param name: a label shown by ``repr``.
    :param domain: constraint the inputs satisfy (default: real over the event).
    :param codomain: constraint the outputs satisfy (default: real over the event); give it
        so that ``TransformedDistribution`` reports the right support and autoguides
        (``biject_to``) propose values inside it.
    :param sign: sign of the derivative of an elementwise map (``1`` increasing, ``-1``
        decreasing); needed for ``cdf``/``icdf`` of a ``TransformedDistribution``.

    >>> import jax.numpy as jnp
    >>> from numpyro.distributions import constraints
    >>> exp = Inline(jnp.exp, jnp.log, inverse_log_det_jacobian_fn=lambda y: -jnp.log(y),
    ...              codomain=constraints.positive, sign=1)
    >>> float(exp.forward_log_det_jacobian(jnp.array(2.0)))
    2.0
    >>> exp.codomain
    Positive(lower_bound=0.0)
    """

    def __init__(
        self,
        forward_fn: Callable,
        inverse_fn: Callable | None = None,
        inverse_log_det_jacobian_fn: Callable | None = None,
        forward_log_det_jacobian_fn: Callable | None = None,
        forward_min_event_ndims: int = 0,
        inverse_min_event_ndims: int | None = None,
        is_constant_jacobian: bool = False,
        forward_shape_fn: Callable | None = None,
        inverse_shape_fn: Callable | None = None,
        name: str = "inline",
        domain: constraints.Constraint | None = None,
        codomain: constraints.Constraint | None = None,
        sign: int | None = None,
    ) -> None:
        if inverse_log_det_jacobian_fn is None and forward_log_det_jacobian_fn is None:
            raise ValueError(
                "Inline: give inverse_log_det_jacobian_fn or forward_log_det_jacobian_fn"
            )
        if forward_log_det_jacobian_fn is None and inverse_fn is None:
            raise ValueError(
                "Inline: inverse_log_det_jacobian_fn alone needs inverse_fn to derive the "
                "forward log-det"
            )
        self.forward_fn = forward_fn
        self.inverse_fn = inverse_fn
        self.inverse_log_det_jacobian_fn = inverse_log_det_jacobian_fn
        self.forward_log_det_jacobian_fn = forward_log_det_jacobian_fn
        self.forward_min_event_ndims = forward_min_event_ndims
        self.inverse_min_event_ndims = inverse_min_event_ndims
        self.is_constant_jacobian = is_constant_jacobian
        self.forward_shape_fn = forward_shape_fn
        self.inverse_shape_fn = inverse_shape_fn
        self.name = name
        for label, constraint, nd in (
            ("domain", domain, self.event_ndims_in),
            ("codomain", codomain, self.event_ndims_out),
        ):
            if constraint is not None and constraint.event_dim != nd:
                raise ValueError(
                    f"Inline: {label} has event_dim {constraint.event_dim} but the map has "
                    f"{nd} event dimension(s)"
                )
        if sign not in (None, 1, -1):
            raise ValueError(f"Inline: sign must be 1, -1 or None, got {sign!r}")
        self._domain = domain
        self._codomain = codomain
        self._sign = sign

    @property
    def domain(self) -> constraints.Constraint:
        return _real(self.event_ndims_in) if self._domain is None else self._domain

    @property
    def codomain(self) -> constraints.Constraint:
        return _real(self.event_ndims_out) if self._codomain is None else self._codomain

    @property
    def sign(self):
        if self._sign is None:
            raise NotImplementedError(
                f"Inline {self.name!r} was given no sign (pass sign=1 or sign=-1)"
            )
        return self._sign

    def _forward_log_det(self, x):
        if self.forward_log_det_jacobian_fn is not None:
            return self.forward_log_det_jacobian_fn(x)
        return -self.inverse_log_det_jacobian_fn(self.forward_fn(x))

    def _inverse_log_det(self, y):
        if self.inverse_log_det_jacobian_fn is not None:
            return self.inverse_log_det_jacobian_fn(y)
        return -self.forward_log_det_jacobian_fn(self._require_inverse()(y))

    def _require_inverse(self) -> Callable:
        if self.inverse_fn is None:
            raise NotImplementedError(f"Inline {self.name!r} was given no inverse_fn")
        return self.inverse_fn

    def _forward_and_log_det(self, x):
        return self.forward_fn(x), self._forward_log_det(x)

    def _inverse_and_log_det(self, y):
        return self._require_inverse()(y), self._inverse_log_det(y)

    def forward(self, x):
        return self.forward_fn(x)

    def inverse(self, y):
        return self._require_inverse()(y)

    def forward_shape(self, shape):
        return shape if self.forward_shape_fn is None else self.forward_shape_fn(shape)

    def inverse_shape(self, shape):
        return shape if self.inverse_shape_fn is None else self.inverse_shape_fn(shape)

    def __repr__(self) -> str:
        return f"Inline({self.name!r})"


class _TransformBijector(Bijector):
    """A NumPyro ``Transform`` seen through the Bijector API."""

    _leaves = ("transform",)

    def __init__(self, transform: Transform) -> None:
        self.transform = transform

    @property
    def event_ndims_in(self) -> int:
        return self.transform.domain.event_dim

    @property
    def event_ndims_out(self) -> int:
        return self.transform.codomain.event_dim

    @property
    def domain(self):
        return self.transform.domain

    @property
    def codomain(self):
        return self.transform.codomain

    @property
    def sign(self):
        return self.transform.sign

    def _forward_and_log_det(self, x):
        y, inter = self.transform.call_with_intermediates(x)
        return y, self.transform.log_abs_det_jacobian(x, y, intermediates=inter)

    def _inverse_and_log_det(self, y):
        x = self.transform.inv(y)
        return x, -self.transform.log_abs_det_jacobian(x, y)

    def forward_shape(self, shape):
        return self.transform.forward_shape(shape)

    def inverse_shape(self, shape):
        return self.transform.inverse_shape(shape)

    def __repr__(self) -> str:
        return f"as_bijector({self.transform!r})"


def as_bijector(transform: Transform) -> Bijector:
    """Return ``transform`` as a :class:`Bijector` (wrapping a plain NumPyro ``Transform``).

    :param transform: any NumPyro transform.

    >>> from numpyro.distributions.transforms import ExpTransform
    >>> as_bijector(ExpTransform()).event_ndims_in
    0
    """
    if isinstance(transform, Bijector):
        return transform
    if not isinstance(transform, Transform):
        raise ValueError(
            f"as_bijector: expected a numpyro Transform, got {type(transform).__name__}"
        )
    return _TransformBijector(transform)


class Invert(Bijector):
    """The inverse bijector: forward is the wrapped bijector's inverse and vice versa.

    :param bijector: a :class:`Bijector` or NumPyro ``Transform``.

    >>> import jax.numpy as jnp
    >>> from numpyro_ext.transforms import Scale
    >>> float(Invert(Scale(2.0)).forward(jnp.array(4.0)))
    2.0
    """

    _leaves = ("bijector",)

    def __init__(self, bijector: Transform) -> None:
        self.bijector = as_bijector(bijector)

    @property
    def event_ndims_in(self) -> int:
        return self.bijector.event_ndims_out

    @property
    def event_ndims_out(self) -> int:
        return self.bijector.event_ndims_in

    @property
    def domain(self) -> constraints.Constraint:
        return self.bijector.codomain

    @property
    def codomain(self) -> constraints.Constraint:
        return self.bijector.domain

    @property
    def sign(self):
        return self.bijector.sign

    @property
    def is_constant_jacobian(self) -> bool:
        return self.bijector.is_constant_jacobian

    def _forward_and_log_det(self, x):
        return self.bijector.inverse_and_log_det(x)

    def _inverse_and_log_det(self, y):
        return self.bijector.forward_and_log_det(y)

    def _forward_log_det(self, x):
        return self.bijector.inverse_log_det_jacobian(x)

    def _inverse_log_det(self, y):
        return self.bijector.forward_log_det_jacobian(y)

    def forward(self, x):
        return self.bijector.inverse(x)

    def inverse(self, y):
        return self.bijector.forward(y)

    def forward_shape(self, shape):
        return self.bijector.inverse_shape(shape)

    def inverse_shape(self, shape):
        return self.bijector.forward_shape(shape)

    def conditioned(self, context) -> Bijector:
        return Invert(self.bijector.conditioned(context))

    @property
    def inv(self) -> Bijector:
        return self.bijector

    def __repr__(self) -> str:
        return f"Invert({self.bijector!r})"


def _chain_event_ndims(parts: Sequence[Bijector]) -> tuple[int, int]:
    """Event ndims (in, out) of parts applied in order, as NumPyro's ComposeTransform does."""
    needed, current = parts[0].event_ndims_in, parts[0].event_ndims_out
    for part in parts[1:]:
        if part.event_ndims_in > current:
            needed += part.event_ndims_in - current
            current = part.event_ndims_in
        current += part.event_ndims_out - part.event_ndims_in
    return needed, current


class Chain(Bijector):
    """Composition in mathematical order: ``Chain([f, g])(x) == f(g(x))`` (TFP, distrax).

    NumPyro's ``ComposeTransform`` lists parts in application order, so
    ``ComposeTransform([g, f])`` is the same map. Parts may be NumPyro transforms and may
    have different minimal event ndims; log-dets are reduced to the chain's event.

    :param bijectors: the parts, last applied first.

    >>> import jax.numpy as jnp
    >>> from numpyro_ext.transforms import Scale, Shift
    >>> float(Chain([Shift(1.0), Scale(2.0)]).forward(jnp.array(3.0)))
    7.0
    """

    _leaves = ("bijectors",)

    def __init__(self, bijectors: Sequence[Transform]) -> None:
        if len(bijectors) == 0:
            raise ValueError("Chain: bijectors must be a non-empty sequence")
        self.bijectors = tuple(as_bijector(b) for b in bijectors)

    @property
    def event_ndims_in(self) -> int:
        return _chain_event_ndims(self.bijectors[::-1])[0]

    @property
    def event_ndims_out(self) -> int:
        return _chain_event_ndims(self.bijectors[::-1])[1]

    @property
    def domain(self) -> constraints.Constraint:
        return _with_event_dim(self.bijectors[-1].domain, self.event_ndims_in)

    @property
    def codomain(self) -> constraints.Constraint:
        return _with_event_dim(self.bijectors[0].codomain, self.event_ndims_out)

    @property
    def sign(self):
        """Product of the parts' signs (defined when every part has one)."""
        sign = 1
        for part in self.bijectors:
            sign = sign * part.sign
        return sign

    @property
    def is_constant_jacobian(self) -> bool:
        return all(b.is_constant_jacobian for b in self.bijectors)

    def _forward_and_log_det(self, x):
        nd, total = self.event_ndims_in, 0.0
        for part in reversed(self.bijectors):
            batch = _batch_shape(x, part.event_ndims_in)
            x, log_det = part.forward_and_log_det(x)
            total = total + _reduce(log_det, nd - part.event_ndims_in, batch)
            nd += part.event_ndims_out - part.event_ndims_in
        return x, total

    def _inverse_and_log_det(self, y):
        nd, total = self.event_ndims_out, 0.0
        for part in self.bijectors:
            batch = _batch_shape(y, part.event_ndims_out)
            y, log_det = part.inverse_and_log_det(y)
            total = total + _reduce(log_det, nd - part.event_ndims_out, batch)
            nd += part.event_ndims_in - part.event_ndims_out
        return y, total

    def forward(self, x):
        for part in reversed(self.bijectors):
            x = part.forward(x)
        return x

    def inverse(self, y):
        for part in self.bijectors:
            y = part.inverse(y)
        return y

    def forward_shape(self, shape):
        for part in reversed(self.bijectors):
            shape = part.forward_shape(shape)
        return shape

    def inverse_shape(self, shape):
        for part in self.bijectors:
            shape = part.inverse_shape(shape)
        return shape

    def conditioned(self, context) -> Bijector:
        return Chain([b.conditioned(context) for b in self.bijectors])

    def __repr__(self) -> str:
        return f"Chain([{', '.join(repr(b) for b in self.bijectors)}])"
