"""Prometheus exporter for Census (Fivetran Activations) reverse-ETL sync runs."""

__version__ = "0.1.0"
