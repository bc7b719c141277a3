"""The two wire protocols of SQS, turned into one shape: an action name and its parameters as a JSON dict.

AWS JSON 1.0 (what current SDKs send): `X-Amz-Target: AmazonSQS.<Action>`, a JSON body, a JSON answer, and
errors as `{"__type", "message"}` plus the `x-amzn-query-error` header. The query protocol (what older SDKs
send): form-encoded `Action=...` with flattened lists (`Attribute.1.Name`, `SendMessageBatchRequestEntry.2.Id`),
answered in XML. Parameters of the query protocol are rebuilt into the JSON protocol's shape, so operations
see one shape; their JSON-shaped results are rendered back as the query protocol's XML.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree

import msgspec

from mom.api.jsontext import check_json_text
from mom.api.sqs.errors import INVALID_ACTION, MISSING_PARAMETER, SqsError
from mom.errors import InvalidInput

JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
XML_NAMESPACE = "http://queue.amazonaws.com/doc/2012-11-05/"
TARGET_PREFIX = "AmazonSQS."

_QUERY_LISTS = {
    "AttributeName": "AttributeNames",
    "MessageAttributeName": "MessageAttributeNames",
    "MessageSystemAttributeName": "MessageSystemAttributeNames",
    "TagKey": "TagKeys",
    "SendMessageBatchRequestEntry": "Entries",
    "DeleteMessageBatchRequestEntry": "Entries",
    "ChangeMessageVisibilityBatchRequestEntry": "Entries",
}
_QUERY_MAPS = {
    "Attribute": ("Attributes", "Name", "Value"),
    "MessageAttribute": ("MessageAttributes", "Name", "Value"),
    "MessageSystemAttribute": ("MessageSystemAttributes", "Name", "Value"),
    "Tag": ("Tags", "Key", "Value"),
}


def is_json(content_type: str | None, target: str | None) -> bool:
    return target is not None or (content_type or "").startswith("application/x-amz-json")


def parse_json(target: str | None, body: bytes) -> tuple[str, dict[str, Any]]:
    if not target or not target.startswith(TARGET_PREFIX):
        raise SqsError(INVALID_ACTION, f"X-Amz-Target must be AmazonSQS.<Action>, not {target!r}")
    try:
        check_json_text(body)
        params = msgspec.json.decode(body or b"{}")
    except InvalidInput as exc:
        raise SqsError(MISSING_PARAMETER, exc.detail) from None
    except msgspec.DecodeError as exc:
        raise SqsError(MISSING_PARAMETER, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise SqsError(MISSING_PARAMETER, "the request body must be a JSON object")
    return target[len(TARGET_PREFIX) :], params


def parse_query(raw_query: str, body: bytes) -> tuple[str, dict[str, Any]]:
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    pairs += parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    tree: dict[str, Any] = {}
    for key, value in pairs:
        _insert(tree, key.split("."), value)
    action = tree.pop("Action", None)
    tree.pop("Version", None)
    if not isinstance(action, str) or not action:
        raise SqsError(INVALID_ACTION, "the request names no Action (and no X-Amz-Target)")
    return action, _shape(tree)


def _insert(tree: dict[str, Any], parts: list[str], value: str) -> None:
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _ordered(node: Any) -> list[Any]:
    """A `{"1": a, "2": b}` node as the list [a, b] (query lists are 1-based and may come in any order)."""
    if not isinstance(node, dict):
        return [node]
    return [node[k] for k in sorted(node, key=lambda k: int(k) if k.isascii() and k.isdigit() else 0)]


def _shape(tree: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, node in tree.items():
        if key in _QUERY_LISTS:
            items = _ordered(node)
            out[_QUERY_LISTS[key]] = [_shape(i) if isinstance(i, dict) else i for i in items]
        elif key in _QUERY_MAPS:
            name, key_field, value_field = _QUERY_MAPS[key]
            mapped: dict[str, Any] = {}
            for item in _ordered(node):
                if isinstance(item, dict) and key_field in item:
                    mapped[item[key_field]] = item.get(value_field)
            out[name] = mapped
        elif isinstance(node, dict):
            out[key] = _shape(node)
        else:
            out[key] = node
    return out


# -- answers -------------------------------------------------------------------------------------------------


def json_body(result: dict[str, Any]) -> bytes:
    return msgspec.json.encode(result)


def json_error(error: SqsError) -> tuple[bytes, dict[str, str]]:
    kind = error.kind
    body = msgspec.json.encode({"__type": f"com.amazonaws.sqs#{kind.shape}", "message": error.message})
    side = "Sender" if kind.sender else "Receiver"
    return body, {"x-amzn-query-error": f"{kind.query_code};{side}"}


_XML_LIST_ITEM = {
    "QueueUrls": "QueueUrl",
    "queueUrls": "QueueUrl",
    "Messages": "Message",
    "Failed": "BatchResultErrorEntry",
    "Results": "ListMessageMoveTasksResultEntry",
}
_XML_MAPS = {
    "Attributes": ("Attribute", "Name", "Value"),
    "MessageAttributes": ("MessageAttribute", "Name", "Value"),
    "Tags": ("Tag", "Key", "Value"),
}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def _xml(parent: ElementTree.Element, key: str, value: Any, action: str) -> None:
    if value is None:
        return
    if key in _XML_MAPS and isinstance(value, dict):
        item, key_name, value_name = _XML_MAPS[key]
        for name, entry in value.items():
            element = ElementTree.SubElement(parent, item)
            ElementTree.SubElement(element, key_name).text = name
            _xml(element, value_name, entry, action)
        return
    if isinstance(value, list):
        item = _XML_LIST_ITEM.get(key) or f"{action}ResultEntry"
        for entry in value:
            _xml(parent, item, entry, action)
        return
    element = ElementTree.SubElement(parent, key)
    if isinstance(value, dict):
        for child_key, child in value.items():
            _xml(element, child_key, child, action)
    else:
        element.text = _text(value)


def xml_body(action: str, result: dict[str, Any], request_id: str) -> bytes:
    root = ElementTree.Element(f"{action}Response", xmlns=XML_NAMESPACE)
    if result:
        container = ElementTree.SubElement(root, f"{action}Result")
        for key, value in result.items():
            _xml(container, key, value, action)
    metadata = ElementTree.SubElement(root, "ResponseMetadata")
    ElementTree.SubElement(metadata, "RequestId").text = request_id
    return bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))


def xml_error(error: SqsError, request_id: str) -> bytes:
    root = ElementTree.Element("ErrorResponse", xmlns=XML_NAMESPACE)
    element = ElementTree.SubElement(root, "Error")
    ElementTree.SubElement(element, "Type").text = "Sender" if error.kind.sender else "Receiver"
    ElementTree.SubElement(element, "Code").text = error.kind.query_code
    ElementTree.SubElement(element, "Message").text = error.message
    ElementTree.SubElement(element, "Detail")
    ElementTree.SubElement(root, "RequestId").text = request_id
    return bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))
