"""The HTTP layer, the only one that knows HTTP: the ASGI app and how it is served.

_types      the request, the answer, the one error body
_body       request bodies within their size and time limits
_watch      knowing that a client left while its request waited
_endpoints  the runtime's JSON routes: /infer, probes, /models, /metrics, admin
_v2         the Open Inference Protocol's routes
_openapi    the OpenAPI document of the JSON routes
_app        the ASGI app: routing, request ids, deadlines, errors, logs, metrics
_protocol   uvicorn's HTTP/1.1 protocol, with the deadlines and limits it lacks
_worker     the Gunicorn worker that runs uvicorn over the app
"""

from ._app import App

__all__ = ["App"]
