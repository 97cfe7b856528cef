"""Teacher rationales: a generic async chat-completions runner (``client``), its record-level cache (``cache``),
versioned prompt files (``prompts/``), the output normaliser (``normalise``), the local OpenAI-compatible
reference teacher (``server`` + ``measures``), the ``rationales`` stage (``stage``) and its benchmark (``bench``)."""
