"""The one place that holds the scorer's prompts: SFT, GRPO, evaluation and ``tatar score`` all import these.

(The reference code drifted between its train and eval prompts; keeping one module makes that impossible.)
Teacher and judge prompts are separate, versioned files under ``tatar/prompts/``.
"""

from __future__ import annotations

from tatar.records import Task

SYSTEM_PROMPT = (
    "You are an expert in image quality and aesthetic assessment. "
    "Reason inside <think></think> when useful, then give the score on a 0-100 scale inside <answer></answer>."
)

QUESTIONS: dict[str, str] = {
    "iqa": "How is the technical quality of this image (sharpness, noise, compression, exposure, colour)? "
    "Answer with a score from 0 to 100.",
    "iaa": "How is the aesthetic quality of this image (composition, light, colour, subject, emotion)? "
    "Answer with a score from 0 to 100.",
}


def prompt_messages(task: Task) -> list[dict]:
    """Conversational prompt (TRL / chat-template form) with one image placeholder."""
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTIONS[task]}]},
    ]


def completion_messages(target: str) -> list[dict]:
    """The assistant's turn of an SFT example (TRL's prompt-completion form)."""
    return [{"role": "assistant", "content": [{"type": "text", "text": target}]}]


def conversation(task: Task, target: str) -> list[dict]:
    """Prompt plus the assistant's target."""
    return prompt_messages(task) + completion_messages(target)
