"""Model-written code: edits to a working copy of a template (``edits``) and the search over programs (``search``)."""
