"""The training core the recipes (``diffucoder.recipes``) stand on; it knows no recipe config.

    env = init_distributed("ddp")                                     # distributed
    engine = build_engine(model, env, backend="ddp", optim=cfg.optim,  # engines: none, DDP, FSDP2,
                          layout=BatchLayout(8, 2, total_steps=1000))  #          DeepSpeed ZeRO
    ckpts = Checkpoints(uri, env, workdir); ckpts.save(step, engine, state)   # checkpoint
    model_dir, training = save_model_dir(module, tokenizer, log, workdir)     # export

Modules: ``config`` (the sections every recipe nests: model, optim, distributed, checkpoint,
train, output), ``distributed`` (torchrun process group, collectives), ``engines`` (one interface
over the back ends; optimizer and schedule from explicit settings), ``checkpoint`` (atomic,
resumable checkpoints of an engine and a typed train state, RNG streams), ``inputs`` (artifacts
fetched into the cache, tokenizer, special ids), ``data_loader`` (resumable seeded rows over token
shards or chat JSONL), ``chat`` (the chat template), ``schedule`` (warm-up + cosine), ``flops``
(model FLOPs, matmul peak), ``metrics`` / ``report`` / ``export`` (JSONL, plots, Markdown, the
Hugging Face model directory).
"""
