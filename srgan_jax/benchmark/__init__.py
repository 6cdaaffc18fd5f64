"""The benchmark: `python -m srgan_jax.benchmark` (usage and what it measures: __main__.py).

The parts: __main__ (flags), figures (what is timed, the table, the report),
flops (analytic FLOP counts), measure (timing, RSS, matmul peaks), torch_worker
(the PyTorch process), torch_reference (the networks and step in PyTorch),
curves (bf16 vs fp32 loss curves). Training and inference never import this
package, and only torch_worker imports torch_reference (tests/test_structure.py).
"""
