"""UCI regression with SVGP, SOLVE-GP, ODVGP and spherical activation features.

The configurations of Tiao, Dutordoir & Picheny (2023): (M, K) = (128, 0), (256, 0) and
(128, 128), M inducing variables in the first set and K in the orthogonal one, on yacht,
energy, concrete, kin8nm and power_plant with the 20 standard splits (90 % train). Rows:

- SVGP with M = 128 and M = 256 points, SOLVE-GP and ODVGP with 128 + 128 points, all with a
  squared-exponential ARD kernel;
- the spherical variants with an order-1 arc-cosine ARD kernel: SVGP with M = 128 and 256 ReLU
  activation features (truncated at ``default_truncation``: L = 4 to 8 here), SOLVE-GP with 128
  ReLU features and 128 points as the v set.

Inputs and targets are standardised on the training split; the Gaussian noise variance and the
kernel hyperparameters are ``numpyro.param`` sites; Adam (1e-2) on ``TraceMeanField_ELBO`` with
minibatches of ``--batch``. Test RMSE and NLPD are in the original units; mean and standard
error over the splits run. The time per step is the median over the run (compilation
excluded), measured in this process; a line per split and row goes to standard error.

Data: ``../shared/data/uci/<name>.npz`` from the repository root (override with ``--data``).
The full table is heavy; run a subset with ``--datasets``, ``--splits`` and ``--steps`` and
report what was run.

Run: ``python examples/uci_orthogonal_gp.py --datasets yacht energy --splits 2 --steps 1000``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.distributions import constraints
from numpyro.infer import SVI, TraceMeanField_ELBO

from numpyro_ext.distributions import GaussianProcess
from numpyro_ext.gp import ArcCosine, SphericalActivationFeatures, SquaredExponential
from numpyro_ext.guides import ODVGP, SOLVEGP, SparseGP

DATASETS = ("yacht", "energy", "concrete", "kin8nm", "power_plant")
_ROOT = Path(__file__).resolve().parents[1]
# ../shared/data/uci from the repository root (one level further up from a git worktree)
DEFAULT_DATA = (
    next(
        (p for p in (_ROOT.parent / "shared", _ROOT.parents[1] / "shared") if p.exists()),
        _ROOT.parent / "shared",
    )
    / "data"
    / "uci"
)


def load(data: Path, name: str, split: int):
    path = data / f"{name}.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"UCI data set {path} not found; pass --data pointing at the folder with "
            f"{', '.join(d + '.npz' for d in DATASETS)}"
        )
    d = np.load(path)
    tr, te = d["train"][split], d["test"][split]
    return d["X"][tr], d["y"][tr], d["X"][te], d["y"][te]


def make_model(kind: str, D: int):
    def model(X, y=None, batch_size=None):
        if kind == "rbf":
            var = numpyro.param("var", 1.0, constraint=constraints.positive)
            ell = numpyro.param("ell", jnp.full(D, math.sqrt(D)), constraint=constraints.positive)
            kernel = SquaredExponential(var, ell)
        else:
            var = numpyro.param("var", 1.0, constraint=constraints.positive)
            bias = numpyro.param("bias", 1.0, constraint=constraints.positive)
            ell = numpyro.param("ell", jnp.ones(D), constraint=constraints.positive)
            kernel = ArcCosine(var, bias, 1, ell)
        noise = numpyro.param("noise", 0.3, constraint=constraints.positive)
        data = numpyro.plate("data", X.shape[0], subsample_size=batch_size)
        with data as idx:
            pass
        f = numpyro.sample("f", GaussianProcess(kernel, X[idx]))
        with data:
            numpyro.sample("y", dist.Normal(f, noise), obs=None if y is None else y[idx])

    return model


def guides(X, key):
    """(name, kernel kind, guide factory, inducing inputs as parameter values) for each row."""
    idx = np.asarray(jax.random.permutation(key, X.shape[0]))
    pts = lambda M, o=0: X[idx[o : o + M]]  # noqa: E731
    W = lambda M: jnp.asarray(  # noqa: E731
        np.random.default_rng(0).normal(size=(M, X.shape[1] + 1)) / np.sqrt(X.shape[1] + 1)
    )
    feats = lambda M: SphericalActivationFeatures(W(M), "relu")  # noqa: E731

    def solve(m):
        return SOLVEGP(m, inducing=pts(128), inducing_v=pts(128, 128))

    def odvgp(m):
        return ODVGP(m, inducing=pts(128), inducing_gamma=pts(128, 128))

    def spherical_solve(m):
        return SOLVEGP(m, inducing=feats(128), inducing_v=pts(128))

    return [
        ("SVGP (128, 0)", "rbf", lambda m: SparseGP(m, inducing=pts(128)), {"auto_f_Z": pts(128)}),
        ("SVGP (256, 0)", "rbf", lambda m: SparseGP(m, inducing=pts(256)), {"auto_f_Z": pts(256)}),
        ("SOLVE-GP (128, 128)", "rbf", solve,
         {"auto_f_Z": pts(128), "auto_f_v_Z": pts(128, 128)}),
        ("ODVGP (128, 128)", "rbf", odvgp,
         {"auto_f_Z": pts(128), "auto_f_gamma_Z": pts(128, 128)}),
        ("spherical SVGP (128, 0)", "arccos", lambda m: SparseGP(m, inducing=feats(128)), {}),
        ("spherical SVGP (256, 0)", "arccos", lambda m: SparseGP(m, inducing=feats(256)), {}),
        ("spherical SOLVE-GP (128, 128)", "arccos", spherical_solve, {"auto_f_v_Z": pts(128)}),
    ]  # fmt: skip


class Fit:
    """One row's model, guide and jitted programs, compiled once and reused for every split.

    The data are arguments of the jitted programs, not constants in them, so every split (the
    same shapes) runs the programs compiled for the first; each split starts from its own
    inducing inputs through ``SVI.init(..., init_params=...)``.
    """

    def __init__(self, factory, kind, D, steps, batch, n_train):
        model = make_model(kind, D)
        self.guide = factory(model)
        self.svi = SVI(model, self.guide, optax.adam(1e-2), TraceMeanField_ELBO())
        self.batch = min(batch, n_train)
        chunk = max(1, (steps - 1) // 5)
        update = lambda s, X, y: self.svi.update(s, X, y, self.batch)[0]  # noqa: E731
        self.step = jax.jit(update)
        self.loop = jax.jit(
            lambda s, X, y: jax.lax.fori_loop(0, chunk, lambda i, s: update(s, X, y), s)
        )
        self.chunk = chunk
        self.predict = jax.jit(self.guide.predict)

    def run(self, Xtr, ytr, Xte, yte, y_sd, init):
        state = self.svi.init(jax.random.key(0), Xtr, ytr, self.batch, init_params=init)
        state = jax.block_until_ready(self.step(state, Xtr, ytr))
        state = jax.block_until_ready(self.loop(state, Xtr, ytr))  # compiles on the first split
        times = []
        for _ in range(4):
            start = time.perf_counter()
            state = jax.block_until_ready(self.loop(state, Xtr, ytr))
            times.append((time.perf_counter() - start) / self.chunk)
        params = self.svi.get_params(state)
        mean, var = self.predict(params, Xte)
        var = var + params["noise"] ** 2
        rmse = float(jnp.sqrt(jnp.mean((mean - yte) ** 2))) * y_sd
        nlpd = float(-jnp.mean(dist.Normal(mean, jnp.sqrt(var)).log_prob(yte))) + math.log(y_sd)
        return rmse, nlpd, float(np.median(times))


def main(args) -> None:
    jax.config.update("jax_enable_x64", True)
    print(
        f"datasets {args.datasets}, splits {args.start}..{args.start + args.splits - 1}, "
        f"{args.steps} steps, "
        f"batch {args.batch}"
    )
    print("| data set | guide | RMSE | NLPD | ms / step |\n|---|---|---|---|---|")
    for name in args.datasets:
        results, fits = {}, {}
        for split in range(args.start, args.start + args.splits):
            Xtr, ytr, Xte, yte = load(args.data, name, split)
            mx, sx = Xtr.mean(0), Xtr.std(0) + 1e-12
            my, sy = ytr.mean(), ytr.std()
            Xtr, Xte = jnp.asarray((Xtr - mx) / sx), jnp.asarray((Xte - mx) / sx)
            ytr, yte = jnp.asarray((ytr - my) / sy), jnp.asarray((yte - my) / sy)
            for row, kind, factory, init in guides(Xtr, jax.random.key(split)):
                if row not in fits:
                    fits[row] = Fit(factory, kind, Xtr.shape[1], args.steps, args.batch, len(Xtr))
                out = fits[row].run(Xtr, ytr, Xte, yte, sy, init)
                print(
                    f"{name} split {split} | {row} | RMSE {out[0]:.4f} | NLPD {out[1]:.4f} | "
                    f"{1e3 * out[2]:.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
                results.setdefault(row, []).append(out)
        for row, outs in results.items():
            a = np.asarray(outs)
            se = a.std(0, ddof=1) / np.sqrt(len(a)) if len(a) > 1 else np.full(3, np.nan)
            print(
                f"| {name} | {row} | {a[:, 0].mean():.3f} ± {se[0]:.3f} | "
                f"{a[:, 1].mean():.3f} ± {se[1]:.3f} | {1e3 * a[:, 2].mean():.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--splits", type=int, default=20, help="number of splits to run")
    parser.add_argument("--start", type=int, default=0, help="first split")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    main(parser.parse_args())
