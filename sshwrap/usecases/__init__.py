"""Use cases: what each command does, as functions that return data for the renderer."""
