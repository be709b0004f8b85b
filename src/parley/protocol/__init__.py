"""Wire models only (pydantic v2): requests, responses, stream events, pages.

No IO and no framework imports. Request models forbid extra fields, because
the real API answers an unknown field with `<path>: Extra inputs are not
permitted` (api-spec §5.1).
"""
