"""Weir external processor: the grpc.aio ext_proc service Envoy calls per request."""
