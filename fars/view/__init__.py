"""``fars view``: runs, live in a browser, served read-only from their own records.

``folders`` finds the runs and sweeps under the served folders and confines file access to them;
``reader`` reads a run's RunRecord, or builds it live from its ledger opened read-only; ``pages``
builds each page's sections (Jinja2 templates, autoescaped); ``server`` is the Starlette app with
server-sent events for live updates. It reads records only: it never imports the pipeline or stages.
"""
