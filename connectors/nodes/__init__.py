"""One module per node type, named after its key (``http.request`` is
``http_request.py``). ``ConnectorsConfig.ready`` imports every module here;
each registers its connector (``connectors/base.py``)."""
