"""The vision tower during SFT: an optional warm-up before it and an optional freeze through it.

Why (NOTES.md, issue 16): the embedded default's tiny Qwen2.5-VL starts from random weights. Its vision tower alone,
regressing MOS from its mean visual token, learned to rank distortions on photographs it never saw (SRCC 0.6-0.7
on a held-out photograph), but inside SFT the answer-token loss re-trained it from the first step and held-out
ranking stayed a lottery. So ``sft.vision_warmup`` first fits the tower (and a throw-away linear head) to the
training IQA images' MOS, and ``sft.freeze_vision`` keeps it fixed while the language model learns to read it.
Freezing the tower is also what many fine-tunes of a pretrained VLM do (the tower is trained already); the warm-up
is for a tower that is not.
"""

from __future__ import annotations

from pathlib import Path

from tatar.config import VisionWarmupConfig
from tatar.errors import ConfigValueError


def vision_tower(model):
    """The vision encoder of a transformers VLM (Qwen2/2.5-VL ``visual``, LLaVA-style ``vision_tower``)."""
    for owner in (getattr(model, "model", model), model):
        for name in ("visual", "vision_tower"):
            if (tower := getattr(owner, name, None)) is not None:
                return tower
    raise ConfigValueError(f"{type(model).__name__} has no vision tower that tatar knows (visual, vision_tower): "
                           "sft.freeze_vision and sft.vision_warmup need one")


def freeze_vision(model) -> int:
    """Stop the vision tower's gradients; returns how many parameters were frozen."""
    params = list(vision_tower(model).parameters())
    for p in params:
        p.requires_grad_(False)
    return sum(p.numel() for p in params)


def warm_up_vision(model, processor, records, cfg: VisionWarmupConfig, seed: int) -> dict:
    """Fit the vision tower to the IQA records' MOS (0-1) through the mean of each image's visual tokens and a linear
    head that is then dropped. Qwen2-VL-family towers (``grid_thw`` in, merged tokens as ``pooler_output`` out)."""
    import time

    import torch
    from PIL import Image
    from scipy.stats import spearmanr
    from tqdm.auto import tqdm

    tower = vision_tower(model)
    if not hasattr(tower, "spatial_merge_size"):
        raise ConfigValueError(f"sft.vision_warmup supports Qwen2-VL-family vision towers, not {type(tower).__name__}")
    iqa = sorted({r.id: r for r in records if r.task == "iqa"}.values(), key=lambda r: r.id)  # order-free
    if len(iqa) < 2:
        raise ConfigValueError(f"sft.vision_warmup needs IQA training records; the corpus has {len(iqa)}")
    start = time.perf_counter()
    images = []
    for r in iqa:
        with Image.open(Path(r.root) / r.image) as im:
            images.append(im.convert("RGB"))
    encoded = processor.image_processor(images=images, return_tensors="pt")
    grids = encoded["image_grid_thw"]
    patches = list(torch.split(encoded["pixel_values"], grids.prod(-1).tolist()))
    target = torch.tensor([r.score_100 for r in iqa], dtype=torch.float32) / 100
    device = next(tower.parameters()).device
    with torch.random.fork_rng(devices=[]):  # a seeded head without moving the caller's RNG
        torch.manual_seed(seed)
        head = torch.nn.Linear(model.config.text_config.hidden_size, 1).to(device)
    optimizer = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=cfg.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    tokens_per_patch = tower.spatial_merge_size ** 2
    dtype = next(tower.parameters()).dtype

    def predict(idx):
        pixels = torch.cat([patches[i] for i in idx]).to(device, dtype)
        merged = tower(pixels, grid_thw=grids[idx].to(device)).pooler_output
        per_image = torch.split(merged, (grids[idx].prod(-1) // tokens_per_patch).tolist())
        return head(torch.stack([t.float().mean(0) for t in per_image]))[:, 0]

    tower.train()
    for _ in tqdm(range(cfg.steps), desc="vision warm-up", unit="step", mininterval=2):
        idx = torch.randint(len(iqa), (cfg.batch_size,), generator=generator)
        loss = torch.nn.functional.mse_loss(predict(idx), target[idx].to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        pred = torch.cat([predict(torch.arange(i, min(i + 64, len(iqa)))) for i in range(0, len(iqa), 64)])
    facts = {"steps": cfg.steps, "images": len(iqa), "train_srcc": round(float(spearmanr(pred.cpu(), target)[0]), 4),
             "seconds": round(time.perf_counter() - start, 1)}
    print(f"sft: vision warm-up, {cfg.steps} steps on {len(iqa)} IQA images in {facts['seconds']} s: "
          f"SRCC {facts['train_srcc']:.3f} on them", flush=True)
    return facts
