"""The QA HTTP service: index and reader behind one FastAPI endpoint, configured by QA_* variables.

`settings` (limits, defaults, ServiceConfig), `schemas` (the request, response and error bodies),
`answering` (loading the models and answering with them) and `app` (the FastAPI app and `serve`).
Started by `python -m retrieval serve`, whose CLI imports it lazily; the action server is its only
client. No other module of the `retrieval` package imports it.
"""
