"""The bookstore: microservices (gateway, auth, catalog, orders, payments, shipping) talking through mom.

`python -m examples.bookstore up` runs a 3-node mom cluster and every service on this machine; README.md in this
folder explains the message flow and compares it with the RabbitMQ version.
"""
