"""Teacher rationales: a generic async chat-completions runner (``client``), its record-level cache (``cache``),
versioned prompt files (``prompts/``), the output normaliser (``normalise``), the ``rationales`` stage (``stage``)
and its benchmark (``bench``). The local reference teacher is a stand-in (``tatar.standins``)."""
