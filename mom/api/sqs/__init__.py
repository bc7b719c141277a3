"""An SQS-compatible endpoint on the REST port: boto3 and the AWS CLI talk to mom's queues unchanged.

Small modules with one job each: `protocol` (JSON 1.0 and query/XML), `sigv4` (signature verification),
`errors`, `md5`, `attributes` (bodies and message attributes), `queue_attributes`, the operations
(`ops_queues`, `ops_messages`) and `route` (authentication, dispatch, forwarding).
"""

from mom.api.sqs.route import install

__all__ = ["install"]
