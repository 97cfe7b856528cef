"""Teacher rationales: a generic async chat-completions runner (``client``), its record-level cache (``cache``),
versioned prompt files (``prompts/``), the output normaliser (``normalise``), the local OpenAI-compatible
reference teacher (``server`` + ``reference`` + ``measures``), the ``rationales`` stage (``stage``) and its benchmark
(``bench``)."""

REFERENCE_MODEL = "tatar-reference-teacher"  # the model name the local reference teacher answers to
# Bump when the reference teacher's writing changes: it is part of the cache key of its replies.
REFERENCE_REVISION = "2"
