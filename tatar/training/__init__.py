"""Training stages on TRL: ``sft`` (supervised fine-tuning with asymmetric thought dropout) and ``grpo``.

``common`` holds what both share (hardware switches, LoRA, resumable work folders, checkpoint saving)."""
