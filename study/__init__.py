"""The timed human-evaluation study: stimuli, counterbalanced design, rater app, SQLite storage."""
