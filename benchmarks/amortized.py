"""SVI step of the digits VAE: ``AmortizedNormal`` against the hand-written guide.

Both guides use the same Flax NNX encoder object, the same parameter names, the same
location/softplus-scale read-out and the same model (decoder MLP, Bernoulli pixels), so the
only difference is the guide's plumbing: prototype trace, input lookup, plate handling. Each
row times one jitted ``svi.update`` on a minibatch of 128 digits drawn through the data
plate's ``subsample_size``; the first call (compilation included) is reported separately.
"""

import argparse

import jax
import optax
from harness import Table, environment, time_call
from numpyro.infer import SVI, Trace_ELBO

from numpyro_ext.demo.sections.amortized import hand_written_guide, load_binary_digits, make_vae
from numpyro_ext.guides.amortized import AmortizedNormal


def step_timing(model, guide, x, batch_size, repeats):
    svi = SVI(model, guide, optax.adam(1e-3), Trace_ELBO())
    state = svi.init(jax.random.key(0), x, subsample_size=batch_size)
    update = jax.jit(lambda s: svi.update(s, x, subsample_size=batch_size))

    def one_step():
        return update(state)

    return time_call(one_step, repeats=repeats)


def main(batch_size: int, hidden: int, repeats: int) -> None:
    x = load_binary_digits()[0]
    table = Table(
        f"SVI step, digits VAE (N={x.shape[0]}, 64 pixels, z=2, hidden={hidden}, "
        f"batch={batch_size})",
        ["guide", "first call incl. compile (s)", "median step (ms)", "ratio ours/anchor"],
    )
    model, encoder = make_vae(hidden=hidden)
    ours = AmortizedNormal(model, encoder, plate="data", inputs="x")
    anchor = hand_written_guide(encoder)
    # Interleave the two so drift on a shared machine hits both alike; keep the best round.
    rounds = [
        (step_timing(model, ours, x, batch_size, repeats),
         step_timing(model, anchor, x, batch_size, repeats))
        for _ in range(3)
    ]  # fmt: skip
    t_ours = min((r[0] for r in rounds), key=lambda t: t.median)
    t_anchor = min((r[1] for r in rounds), key=lambda t: t.median)
    table.add("numpyro_ext AmortizedNormal", t_ours.first, 1e3 * t_ours.median,
              t_ours.median / t_anchor.median)  # fmt: skip
    table.add("hand-written guide (examples/vae.py style)", t_anchor.first,
              1e3 * t_anchor.median, 1.0)  # fmt: skip
    table.print()
    print(f"_{environment()}_\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=51)
    args = parser.parse_args()
    main(args.batch_size, args.hidden, args.repeats)
