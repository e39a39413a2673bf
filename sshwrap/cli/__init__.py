"""The thin command-line shell: parse flags, call a use case, render its result."""
