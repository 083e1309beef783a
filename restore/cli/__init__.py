"""The command line: thin Typer commands over the library; the only layer that prints."""
