"""Command modules; each one registers its commands on the shared Typer app."""
