"""What a reader gets: the paper document, the harness's prose, grounding of numbers and citations, claim checks, LaTeX, figures and degenerate text."""
