"""What the service stores is what the client wrote: the JSON reader and writer (Python API).

Two parsers sit behind jsonutil (orjson where it is exact, simplejson otherwise); these pin
that both ways give the same answers, so which one ran never shows.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from fhir_service import jsonutil

CASES = [
    (b'{"resourceType":"Patient","active":true,"multipleBirthInteger":2}', {"resourceType": "Patient", "active": True,
                                                                         "multipleBirthInteger": 2}),
    (b'{"value":1.50}', {"value": Decimal("1.50")}),             # precision kept
    (b'{"value":1e2,"v":-0.0}', {"value": Decimal("1E+2"), "v": Decimal("-0.0")}),
    (b'{"big":123456789012345678901234567890}', {"big": 123456789012345678901234567890}),  # not a float
    (b'{"neg":-9999999999999999999}', {"neg": -9999999999999999999}),  # past 64 bits, negative
    (b'{"id":"a1e5","time":"10:00:00.5"}', {"id": "a1e5", "time": "10:00:00.5"}),
    ('{"name":"Zo\\u00eb \\ud83d\\ude00"}'.encode(), {"name": "Zoë 😀"}),
    (b'{"a":1,"a":2}', {"a": 2}),                                # the last of duplicate keys, either way
]


@pytest.mark.parametrize("text,expected", CASES)
def test_reading_keeps_what_was_written(text, expected):
    parsed = jsonutil.loads(text)
    assert parsed == expected
    assert [type(v) for v in parsed.values()] == [type(v) for v in expected.values()]
    assert jsonutil.loads(text.decode()) == expected  # text and bytes agree


@pytest.mark.parametrize("text", [b'{"value":1.50,"n":[1E+2,0.10]}', b'{"big":123456789012345678901234567890}',
                                  '{"s":"café \\"q\\" \\n","a":[true,false,null]}'.encode()])
def test_writing_gives_back_the_text_that_was_read(text):
    assert jsonutil.dumps(jsonutil.loads(text)) == text.decode()
    assert jsonutil.dumps_bytes(jsonutil.loads(text)) == text


def test_decimals_are_written_verbatim():
    assert jsonutil.dumps({"v": Decimal("1.50"), "w": [Decimal("0.10")]}) == '{"v":1.50,"w":[0.10]}'
    assert jsonutil.dumps({"big": 2 ** 70}) == '{"big":%d}' % 2 ** 70  # past orjson's 64 bits


@pytest.mark.parametrize("text", [b'{"a":', b'{"a":NaN}', b'{"a":Infinity}', b'["\\ud800"', b'\xff{}', b'{"a":1}x',
                                  b'{"a":"X\\ud800"}', b'{"\\udc00":1}'])
def test_malformed_json_is_refused_with_a_reason(text):
    with pytest.raises(jsonutil.JSONError):
        jsonutil.loads(text)
