"""The REST endpoints, one blueprint per resource."""
