"""Conditioner networks: what turns the conditioning inputs of a flow layer into its parameters.

A coupling or autoregressive layer asks its conditioner for the parameters of an elementwise
bijector. Any of these can be the conditioner:

- a Flax NNX module or an Equinox module (its weights become part of the bijector pytree);
- a pure function with a parameter pytree, ``as_conditioner(apply, params)`` calling
  ``apply(params, inputs)``;
- any callable ``net(inputs)``, e.g. the function returned by
  ``numpyro.contrib.module.nnx_module`` / ``eqx_module`` inside a model or guide (its weights
  are then NumPyro params);
- :class:`MLP` and :class:`MADE` defined here: small pure-JAX networks whose last layer starts
  at zero, so a fresh flow is the identity map.

The inputs are ``concatenate([x_conditioning, context], -1)`` when the layer has a context:
that is how conditional flows (amortised guides, conditional density estimation) see their
condition. Equinox modules act on one input vector and are ``vmap``-ed over batch dimensions;
everything else must accept leading batch dimensions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["MADE", "MLP", "Conditioner", "as_conditioner"]


def _dense_init(key, n_in: int, n_out: int, zero: bool):
    """Uniform(-1/sqrt(n_in), 1/sqrt(n_in)) weights and biases (random biases matter for
    narrow inputs: with zero biases every ReLU unit of a 1-d input kinks at 0)."""
    if zero:
        return jnp.zeros((n_in, n_out)), jnp.zeros(n_out)
    kw, kb = jax.random.split(key)
    bound = 1.0 / np.sqrt(n_in)
    w = jax.random.uniform(kw, (n_in, n_out), minval=-bound, maxval=bound)
    b = jax.random.uniform(kb, (n_out,), minval=-bound, maxval=bound)
    return w, b


@jax.tree_util.register_pytree_node_class
class MLP:
    """A multilayer perceptron \\(h_{l+1} = \\sigma(h_l W_l + b_l)\\), linear last layer.

    :param layers: list of ``(W, b)`` pairs.
    :param activation: elementwise nonlinearity (static).

    >>> import jax
    >>> net = MLP.init(jax.random.key(0), 3, (8,), 4)
    >>> net(jax.numpy.ones((5, 3))).shape
    (5, 4)
    """

    def __init__(self, layers: Sequence[tuple], activation: Callable = jax.nn.gelu) -> None:
        self.layers = list(layers)
        self.activation = activation

    @classmethod
    def init(
        cls,
        key,
        n_in: int,
        hidden: Sequence[int],
        n_out: int,
        activation: Callable = jax.nn.gelu,
        zero_last: bool = True,
    ) -> MLP:
        """Uniform random weights and biases; a zero last layer when ``zero_last``.

        :param key: PRNG key.
        :param n_in: input width.
        :param hidden: hidden widths.
        :param n_out: output width.
        :param activation: nonlinearity.
        :param zero_last: start with a zero output layer (identity flows at initialisation).
        """
        sizes = [n_in, *hidden, n_out]
        keys = jax.random.split(key, len(sizes) - 1)
        layers = [
            _dense_init(k, a, b, zero=zero_last and i == len(sizes) - 2)
            for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True))
        ]
        return cls(layers, activation)

    def __call__(self, x):
        for w, b in self.layers[:-1]:
            x = self.activation(x @ w + b)
        w, b = self.layers[-1]
        return x @ w + b

    def tree_flatten(self):
        return (self.layers,), self.activation

    @classmethod
    def tree_unflatten(cls, activation, children):
        return cls(children[0], activation)


@jax.tree_util.register_pytree_node_class
class MADE:
    """Masked autoencoder (Germain et al. 2015): output ``(p, i)`` sees only inputs ``< i``.

    Input is ``concatenate([x, context])`` with ``x`` of width ``dim``; context units have
    degree 0 and feed every hidden unit. The output has ``num_params * dim`` units in
    parameter-major order (unit ``p * dim + i`` belongs to dimension ``i``).

    :param layers: list of ``(W, b)`` pairs.
    :param degrees: per layer, the static tuple of unit degrees (input included).
    :param dim: autoregressive dimension.
    :param activation: nonlinearity.

    >>> import jax
    >>> made = MADE.init(jax.random.key(0), 3, (16,), num_params=2)
    >>> made(jax.numpy.ones(3)).shape
    (6,)
    """

    def __init__(self, layers, degrees, dim: int, activation: Callable = jax.nn.gelu) -> None:
        self.layers = list(layers)
        self.degrees = tuple(tuple(d) for d in degrees)
        self.dim = dim
        self.activation = activation

    @classmethod
    def init(
        cls,
        key,
        dim: int,
        hidden: Sequence[int],
        num_params: int,
        context_dim: int = 0,
        activation: Callable = jax.nn.gelu,
        zero_last: bool = True,
    ) -> MADE:
        """Weights for a MADE with hidden degrees cycling through ``1 .. dim - 1``.

        :param key: PRNG key.
        :param dim: number of autoregressive dimensions.
        :param hidden: hidden widths.
        :param num_params: parameters per dimension.
        :param context_dim: width of the context appended to the input.
        :param activation: nonlinearity.
        :param zero_last: zero output layer (identity flow at initialisation).
        """
        if dim < 2:
            raise ValueError(f"MADE: dim must be >= 2, got {dim}")
        degrees = [tuple(range(1, dim + 1)) + (0,) * context_dim]
        degrees += [tuple(int(d) for d in np.arange(h) % (dim - 1) + 1) for h in hidden]
        degrees += [tuple(np.tile(np.arange(1, dim + 1), num_params).tolist())]
        sizes = [len(d) for d in degrees]
        keys = jax.random.split(key, len(sizes) - 1)
        layers = [
            _dense_init(k, a, b, zero=zero_last and i == len(sizes) - 2)
            for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True))
        ]
        return cls(layers, degrees, dim, activation)

    def _masks(self):
        masks = []
        last = len(self.degrees) - 2
        for i, (d_in, d_out) in enumerate(zip(self.degrees[:-1], self.degrees[1:], strict=True)):
            d_in, d_out = np.asarray(d_in)[:, None], np.asarray(d_out)[None, :]
            masks.append(d_out > d_in if i == last else d_out >= d_in)
        return masks

    def __call__(self, x):
        masks = self._masks()
        for (w, b), m in zip(self.layers[:-1], masks[:-1], strict=True):
            x = self.activation(x @ (w * m) + b)
        w, b = self.layers[-1]
        return x @ (w * masks[-1]) + b

    def tree_flatten(self):
        return (self.layers,), (self.degrees, self.dim, self.activation)

    @classmethod
    def tree_unflatten(cls, static, children):
        return cls(children[0], *static)


def _apply(kind: str, fn, params, inputs):
    if kind == "params":
        return fn(params, inputs)
    if kind == "nnx":
        from flax import nnx

        return nnx.merge(fn, params)(inputs)
    if kind == "module":
        return params(inputs)
    if kind == "eqx":
        import equinox as eqx

        return eqx.combine(params, fn)(inputs)
    return fn(inputs)


@jax.tree_util.register_pytree_node_class
class Conditioner:
    """A network with its parameters as a pytree; build it with :func:`as_conditioner`.

    :param kind: ``"params"`` (``fn(params, inputs)``), ``"nnx"`` (``fn`` is the NNX graph
        definition, ``params`` its state), ``"eqx"`` (``fn`` the static part of an Equinox
        module, ``params`` its arrays), ``"module"`` (``params`` is a callable pytree) or
        ``"plain"`` (``fn(inputs)``, no parameters).
    :param fn: the static part (function or graph definition).
    :param params: parameter pytree (may be ``None``).
    :param batched: whether the network accepts leading batch dimensions (else vmapped).
    """

    def __init__(self, kind: str, fn, params, batched: bool = True) -> None:
        self.kind = kind
        self.fn = fn
        self.params = params
        self.batched = batched

    def __call__(self, inputs):
        if self.batched or inputs.ndim == 1:
            return _apply(self.kind, self.fn, self.params, inputs)
        flat = inputs.reshape(-1, inputs.shape[-1])
        out = jax.vmap(lambda p, v: _apply(self.kind, self.fn, p, v), in_axes=(None, 0))(
            self.params, flat
        )
        return out.reshape((*inputs.shape[:-1], out.shape[-1]))

    def tree_flatten(self):
        return (self.params,), (self.kind, self.fn, self.batched)

    @classmethod
    def tree_unflatten(cls, static, children):
        kind, fn, batched = static
        return cls(kind, fn, children[0], batched)


def _is_eqx_module(net) -> bool:
    try:
        import equinox as eqx
    except ImportError:  # pragma: no cover - equinox is an optional dependency
        return False
    return isinstance(net, eqx.Module)


def _is_nnx_module(net) -> bool:
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover - flax is an optional dependency
        return False
    return isinstance(net, nnx.Module)


def as_conditioner(net, params=None, batched: bool | None = None) -> Conditioner:
    """Normalise a network into a :class:`Conditioner`.

    :param net: an NNX module, an Equinox module, :class:`MLP` / :class:`MADE`, a callable
        ``net(inputs)``, or a pure ``apply(params, inputs)`` when ``params`` is given.
    :param params: parameter pytree for a pure ``apply`` function.
    :param batched: whether ``net`` accepts leading batch dims (default: false for Equinox
        modules, true otherwise).

    >>> import jax, jax.numpy as jnp
    >>> cond = as_conditioner(lambda p, x: x @ p, jnp.ones((2, 3)))
    >>> cond(jnp.ones((4, 2))).shape
    (4, 3)
    """
    if isinstance(net, Conditioner):
        return net
    if not callable(net):
        raise ValueError(f"as_conditioner: net must be callable, got {type(net).__name__}")
    if params is not None:
        return Conditioner("params", net, params, True if batched is None else batched)
    if _is_nnx_module(net):
        from flax import nnx

        graphdef, state = nnx.split(net)
        return Conditioner("nnx", graphdef, state, True if batched is None else batched)
    if _is_eqx_module(net):
        import equinox as eqx

        params, static = eqx.partition(net, eqx.is_array)
        return Conditioner("eqx", static, params, False if batched is None else batched)
    if isinstance(net, MLP | MADE):
        return Conditioner("module", None, net, True)
    return Conditioner("plain", net, None, True if batched is None else batched)
