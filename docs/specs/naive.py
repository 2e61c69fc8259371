"""The failing loss of docs/check-loss.md: DPO written as −log σ(βΔ) (overflows at large margins)
and declared with the forward-KL RLHF as its counterpart (DPO's is the reverse-KL one)."""
import jax
import jax.numpy as jnp

import bandit_lab as bl


def naive_dpo(inputs, hp):
    hw, hl = bl.log_ratios(inputs)
    return bl.expect(inputs.data, -jnp.log(jax.nn.sigmoid(hp["beta"] * (hw - hl))))


bl.register_loss(bl.LossSpec("naive_dpo", naive_dpo, defaults={"beta": 1.0},
                             counterpart=lambda static: ("rlhf", {"divergence": "forward_kl", "reward": "bt"})))
