"""Problems: what is trained. ``registry`` maps names to builders; ``base`` holds ``Problem``."""
