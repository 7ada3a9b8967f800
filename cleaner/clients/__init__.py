"""Client factories and the call discipline around them: retries, pacing, error mapping."""
