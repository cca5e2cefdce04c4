"""Reading a paper: PDF, LaTeX and Markdown as titled sections of text, and the defence against text aimed at the reviewer."""
