"""``tatar bench lm-head``: one SFT step of the tiny model with TRL's tiled LM head (the loss path of TRL's
``SFTTrainer``), the model's own loss (every position through the LM head) and the plain loss ``sft.lm_head: auto``
takes on a CPU (the head on labelled positions only), on the same batch in one process; prints them side by side.

TRL computes the loss in tiles to keep GPU memory flat on large vocabularies; on a CPU that path costs more than
the plain ``logits -> cross-entropy`` it replaces."""

from __future__ import annotations

import os


def run_bench(steps: int = 20, examples: int = 8, iaa: int = 0) -> dict[str, float]:
    import torch
    from trl.trainer.utils import add_fused_lm_head

    from tatar.threads import configure_cpu_threads
    from tatar.training.sft import answer_token_loss
    from tatar.training.threads_bench import seconds_per_step, tiny_sft_batch

    configure_cpu_threads()
    model, batch = tiny_sft_batch(examples, iaa)
    labels = batch["labels"]

    def tiled_loss():  # SFTTrainer.compute_loss: per-token log-probs from the tiled head, mean over label tokens
        out = model(**batch, fused_lm_head=True)
        return -out.log_probs.sum() / torch.clamp(out.label_mask.sum(), min=1)

    own = seconds_per_step(model, lambda: model(**batch).loss, steps)
    plain = seconds_per_step(model, lambda: answer_token_loss(model, batch)[0], steps)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # what SFTTrainer adds
    tiled = seconds_per_step(model, tiled_loss, steps)
    print(f"SFT step of the tiny model ({examples - iaa} IQA + {iaa} IAA examples, {labels.shape[1]} tokens each, "
          f"{int((labels != -100).sum())} with a label), {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"{'loss path':>22} | s/step")
    print(f"{'TRL tiled LM head':>22} | {tiled:.3f}")
    print(f"{'model loss':>22} | {own:.3f}")
    print(f"{'labelled head (plain)':>22} | {plain:.3f}")
    print(f"plain vs tiled: {tiled / plain:.2f}x faster; vs the model's loss: {own / plain:.2f}x")
    return {"tiled": tiled, "own": own, "plain": plain}
