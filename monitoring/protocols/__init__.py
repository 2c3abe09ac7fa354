"""Receivers for the ecosystem's push protocols (Prometheus remote write, OTLP), one module each."""
