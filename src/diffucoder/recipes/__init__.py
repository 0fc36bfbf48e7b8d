"""The training recipes: one file each, read top to bottom (config, inputs, train state, loop, export,
command line), on the training core (``diffucoder.training``).

    diffucoder pretrain | sft ...   ->  masked_diffusion  (pre-training / adaptation and SFT)
    diffucoder rl train | filter    ->  coupled_grpo      (reinforcement learning)
"""
