"""The embedded default's stand-ins for the paper's models, not part of the pipeline: the local reference teacher
(``teacher``: rationales grounded in the image ``measures``), the reference judge (``judge``) and the
OpenAI-compatible ``server`` that answers both. The real client, stage and validation reach them only through
that server, which ``base_url: local`` starts for the length of a run (or ``tatar teacher serve``)."""

REFERENCE_MODEL = "tatar-reference-teacher"  # the model name the local reference teacher answers to
# Bump when the reference teacher's writing changes: it is part of the cache key of its replies.
REFERENCE_REVISION = "2"
