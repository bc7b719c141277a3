"""SQS errors: the codes, HTTP statuses and fault sides that SQS clients expect, and mom's errors mapped onto them.

An SQS error has two names: the shape name of the JSON protocol (`__type`, e.g. `QueueDoesNotExist`) and the
older query protocol's code (e.g. `AWS.SimpleQueueService.NonExistentQueue`), which JSON answers repeat in the
`x-amzn-query-error` header so that SDKs match either. `SqsError` carries both; the protocol module renders it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mom.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    MomError,
    NotFound,
    Overloaded,
    QuotaExceeded,
    TooLarge,
    Unauthorized,
    Unavailable,
)


@dataclass(frozen=True)
class Kind:
    shape: str
    """The JSON protocol's error name (`__type`)."""
    query_code: str
    status: int
    sender: bool = True


QUEUE_DOES_NOT_EXIST = Kind("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", 400)
QUEUE_NAME_EXISTS = Kind("QueueNameExists", "QueueAlreadyExists", 400)
INVALID_PARAMETER_VALUE = Kind("InvalidParameterValue", "InvalidParameterValue", 400)
MISSING_PARAMETER = Kind("MissingParameter", "MissingParameter", 400)
INVALID_ATTRIBUTE_NAME = Kind("InvalidAttributeName", "InvalidAttributeName", 400)
INVALID_ATTRIBUTE_VALUE = Kind("InvalidAttributeValue", "InvalidAttributeValue", 400)
INVALID_MESSAGE_CONTENTS = Kind("InvalidMessageContents", "InvalidMessageContents", 400)
RECEIPT_HANDLE_IS_INVALID = Kind("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", 400)
MESSAGE_NOT_INFLIGHT = Kind("MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight", 400)
EMPTY_BATCH = Kind("EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest", 400)
TOO_MANY_ENTRIES = Kind("TooManyEntriesInBatchRequest", "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400)
IDS_NOT_DISTINCT = Kind("BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", 400)
INVALID_BATCH_ENTRY_ID = Kind("InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId", 400)
BATCH_TOO_LONG = Kind("BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong", 400)
UNSUPPORTED_OPERATION = Kind("UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", 400)
RESOURCE_NOT_FOUND = Kind("ResourceNotFoundException", "ResourceNotFoundException", 404)
INVALID_ACTION = Kind("InvalidAction", "InvalidAction", 400)
REQUEST_THROTTLED = Kind("RequestThrottled", "RequestThrottled", 400)
OVER_LIMIT = Kind("OverLimit", "OverLimit", 403)
"""A per-principal quota (destinations, long-polls): SQS's error for a limit, which SDKs do not retry."""
ACCESS_DENIED = Kind("AccessDenied", "AccessDenied", 403)
INVALID_CLIENT_TOKEN_ID = Kind("InvalidClientTokenId", "InvalidClientTokenId", 403)
SIGNATURE_DOES_NOT_MATCH = Kind("SignatureDoesNotMatch", "SignatureDoesNotMatch", 403)
INCOMPLETE_SIGNATURE = Kind("IncompleteSignature", "IncompleteSignature", 400)
MISSING_AUTHENTICATION_TOKEN = Kind("MissingAuthenticationToken", "MissingAuthenticationToken", 403)
SERVICE_UNAVAILABLE = Kind("ServiceUnavailable", "ServiceUnavailable", 503, sender=False)
INTERNAL_FAILURE = Kind("InternalFailure", "InternalFailure", 500, sender=False)


class SqsError(Exception):
    def __init__(self, kind: Kind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def from_mom(error: MomError, *, invalid: Kind = INVALID_PARAMETER_VALUE) -> SqsError:
    """The SQS error a client expects for one of mom's; `invalid` names what bad input is in this operation."""
    kind: Kind
    if isinstance(error, NotFound):
        kind = QUEUE_DOES_NOT_EXIST
    elif isinstance(error, Conflict):
        kind = QUEUE_NAME_EXISTS
    elif isinstance(error, InvalidInput | TooLarge):
        kind = invalid
    elif isinstance(error, Forbidden):
        kind = ACCESS_DENIED
    elif isinstance(error, Unauthorized):
        kind = INVALID_CLIENT_TOKEN_ID
    elif isinstance(error, QuotaExceeded):
        kind = OVER_LIMIT
    elif isinstance(error, Overloaded):
        kind = REQUEST_THROTTLED
    elif isinstance(error, Unavailable):
        kind = SERVICE_UNAVAILABLE
    else:
        kind = INTERNAL_FAILURE
    return SqsError(kind, error.detail)
