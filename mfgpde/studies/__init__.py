"""Well-posedness studies: controls, multi-start, monotonicity, refinement (the ``wellposed`` verb)."""
