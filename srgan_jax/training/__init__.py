"""Training a generator (and D) as the paper does: the loop (`loop.train_and_evaluate`), the
jitted update step and its losses (`update_step`, `losses`), the TrainStates (`train_states`),
the two phases (`phases`), config checks, Orbax checkpoints, preemption, non-finite checks,
the run log and metric writers, and multi-host start-up (`distributed`).

Imports nets, data, weights, common and evaluation's public modules (metrics, validation,
inference). Only the commands (`srgan_jax.main`) and the benchmarks import `loop`.
"""
