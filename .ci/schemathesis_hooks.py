"""schemathesis hooks of .ci/schemathesis.

- POST /v1/import takes NDJSON (one record JSON per line); the document describes the body
  as that text (a string), so it is sent as the text it is, like text/plain.
- POST /v1/revocations refuses an expires_at in the past (SPEC section 5). "In the future"
  depends on the clock, which no schema can say; a positive (schema-valid) case with a past
  expires_at therefore gets one an hour from now. Negative cases are sent as generated.
"""
import datetime

import schemathesis
from schemathesis.generation import GenerationMode

schemathesis.serializer.alias("application/x-ndjson", "text/plain")


def _instant(text):
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, TypeError, AttributeError):
        return None


@schemathesis.hook
def map_case(context, case):
    op = case.operation
    if op.method.upper() != "POST" or op.path != "/v1/revocations":
        return case
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return case
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("expires_at"), str):
        at = _instant(body["expires_at"])
        now = datetime.datetime.now(datetime.timezone.utc)
        if at is not None and (at.tzinfo is None or at <= now + datetime.timedelta(minutes=1)):
            soon = now + datetime.timedelta(hours=1)
            body["expires_at"] = soon.strftime("%Y-%m-%dT%H:%M:%SZ")
    return case
