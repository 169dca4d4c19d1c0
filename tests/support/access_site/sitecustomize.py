"""Loaded at start by a Python process whose PYTHONPATH holds this folder (the access tests start
each workload so): with STREAMFORGE_ACCESS_LOG set, every Google API call the process makes is
appended to that file as a JSON line, as the client library sends it (gRPC method and the
request's resource fields; HTTP method, URL and, for a BigQuery job, its query), and so is
every environment variable the process reads (a deployment fills some from Secret Manager).
STREAMFORGE_WORKLOAD names the workload. Recording never changes what the call does."""

import json
import os
import threading

_LOG = os.environ.get("STREAMFORGE_ACCESS_LOG")
_WORKLOAD = os.environ.get("STREAMFORGE_WORKLOAD", "")
_FIELDS = ("topic", "subscription", "database", "name", "parent")

if _LOG:
    _seen: set = set()
    _lock = threading.Lock()

    def _write(entry: dict) -> None:
        key = json.dumps(entry, sort_keys=True)
        with _lock:
            if key in _seen:
                return
            _seen.add(key)
            with open(_LOG, "a", encoding="utf-8") as log:
                log.write(json.dumps({"workload": _WORKLOAD, **entry}) + "\n")

    # -- environment reads ------------------------------------------------------------------
    _getitem = os._Environ.__getitem__

    def _recording_getitem(self, key):
        if self is os.environ and isinstance(key, str):
            _write({"kind": "env", "name": key})
        return _getitem(self, key)

    os._Environ.__getitem__ = _recording_getitem

    # -- gRPC (Pub/Sub, Firestore) ------------------------------------------------------------
    try:
        import grpc
    except ImportError:
        grpc = None

    if grpc is not None:

        def _record_request(method: str, request) -> None:
            fields = {}
            for name in _FIELDS:
                value = getattr(request, name, None)
                if isinstance(value, str) and value:
                    fields[name] = value
            _write({"kind": "grpc", "method": method, **fields})

        def _tap(method, requests):
            for request in requests:
                _record_request(method, request)
                yield request

        class _Recorder(
            grpc.UnaryUnaryClientInterceptor,
            grpc.UnaryStreamClientInterceptor,
            grpc.StreamUnaryClientInterceptor,
            grpc.StreamStreamClientInterceptor,
        ):
            def intercept_unary_unary(self, continuation, details, request):
                _record_request(details.method, request)
                return continuation(details, request)

            def intercept_unary_stream(self, continuation, details, request):
                _record_request(details.method, request)
                return continuation(details, request)

            def intercept_stream_unary(self, continuation, details, requests):
                return continuation(details, _tap(details.method, requests))

            def intercept_stream_stream(self, continuation, details, requests):
                return continuation(details, _tap(details.method, requests))

        def _wrap(create):
            def channel(*args, **kwargs):
                return grpc.intercept_channel(create(*args, **kwargs), _Recorder())

            return channel

        grpc.insecure_channel = _wrap(grpc.insecure_channel)
        grpc.secure_channel = _wrap(grpc.secure_channel)

    # -- HTTP (Cloud Storage's and BigQuery's JSON APIs) -------------------------------------------
    def _record_http(method: str, url: str, body) -> None:
        entry = {"kind": "http", "method": method.upper(), "url": url.split("?", 1)[0]}
        if method.upper() == "POST" and "/bigquery/v2/projects/" in url and url.split("?", 1)[0].endswith("/jobs"):
            try:
                query = json.loads(body).get("configuration", {}).get("query", {}).get("query")
            except (TypeError, ValueError, AttributeError):
                query = None
            if query:
                entry["query"] = query
        _write(entry)

    try:
        import requests
    except ImportError:
        requests = None
    if requests is not None:
        _request = requests.Session.request

        def _recording_request(self, method, url, *args, **kwargs):
            _record_http(method, url, kwargs.get("data") or kwargs.get("json") and json.dumps(kwargs["json"]))
            return _request(self, method, url, *args, **kwargs)

        requests.Session.request = _recording_request

    try:
        import httplib2
    except ImportError:
        httplib2 = None
    if httplib2 is not None:
        _http = httplib2.Http.request

        def _recording_http(self, uri, method="GET", body=None, *args, **kwargs):
            _record_http(method, uri, body)
            return _http(self, uri, method, body, *args, **kwargs)

        httplib2.Http.request = _recording_http
