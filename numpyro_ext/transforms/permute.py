"""Permutation of the last axis: \\(y_i = x_{\\pi(i)}\\), volume preserving.

Placed between coupling or autoregressive layers so that every coordinate gets transformed.
The permutation is static (a tuple of ints), so identical layers stay identical pytrees and can
be stacked with :class:`~numpyro_ext.transforms.Scan`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from numpyro_ext.transforms.bijector import Bijector

__all__ = ["Permute"]


class Permute(Bijector):
    """\\(y = x[..., \\pi]\\); log-det 0.

    :param permutation: a permutation of ``range(d)``.

    >>> import jax.numpy as jnp
    >>> Permute([2, 0, 1]).forward(jnp.array([1.0, 2.0, 3.0])).tolist()
    [3.0, 1.0, 2.0]
    """

    forward_min_event_ndims = 1
    is_constant_jacobian = True

    def __init__(self, permutation: Sequence[int]) -> None:
        perm = np.asarray(permutation)
        if perm.ndim != 1 or sorted(perm.tolist()) != list(range(perm.size)):
            raise ValueError(
                f"Permute: permutation must be a permutation of range(d), got {perm.tolist()}"
            )
        self.permutation = tuple(int(i) for i in perm)

    @classmethod
    def reverse(cls, dim: int) -> Permute:
        """The reversal \\(\\pi(i) = d - 1 - i\\).

        :param dim: event size.
        """
        return cls(tuple(range(dim - 1, -1, -1)))

    def _check(self, x):
        if jnp.shape(x)[-1] != len(self.permutation):
            raise ValueError(
                f"Permute: input last axis has size {jnp.shape(x)[-1]}, "
                f"permutation has size {len(self.permutation)}"
            )

    def _apply(self, value, permutation):
        self._check(value)
        if permutation == tuple(range(len(permutation) - 1, -1, -1)):
            out = jnp.flip(value, -1)  # a reversal is a cheap rev, not a gather
        else:
            out = value[..., np.asarray(permutation)]
        return out, jnp.zeros(jnp.shape(out)[:-1], out.dtype)

    def _forward_and_log_det(self, x):
        return self._apply(x, self.permutation)

    def _inverse_and_log_det(self, y):
        return self._apply(y, tuple(int(i) for i in np.argsort(self.permutation)))
