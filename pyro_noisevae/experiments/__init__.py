"""Paper reproductions: each experiment is a function writing JSON/Markdown/PNG, with a CLI subcommand."""
