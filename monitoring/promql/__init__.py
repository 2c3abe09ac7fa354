"""A PromQL engine over Perfpilot's store, parsed with promql-parser, answering as Prometheus 2.42 does.

engine: evaluation (selectors, functions, aggregations, binary operators); functions: the functions;
data: which series match and their raw samples; http: the HTTP API's parameter and JSON formats.
"""
