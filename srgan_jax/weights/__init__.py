"""Parameters as files: the shipped generators (`zoo`, the .msgpack files and model cards beside
it), run checkpoints read for inference (`checkpoint_files`), and the ImageNet VGG/AlexNet weights
with LPIPS's layers (`pretrained`).

Reads and writes files only: imports `common`, never the networks that use the weights.
"""
