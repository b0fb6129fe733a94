"""Rules for particular datatypes that are not expressed as invariants: Attachment size,
UK NHS numbers (Modulus 11)."""
from __future__ import annotations

import base64
import binascii
import operator

from .primitives import PRIMITIVE_TYPES

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)


def nhs_number_valid(value: str) -> bool:
    """Modulus 11: weights 10..2 on digits 1-9; check = 11 - (sum mod 11); 11 -> 0; 10 is invalid."""
    if len(value) != 10 or not value.isdigit():
        return False
    if not value.isascii():  # other Unicode digits: int() reads them too
        return _nhs_number_valid_slow(value)
    b = value.encode()
    total = sum(map(operator.mul, b, _WEIGHTS)) - 48 * 54  # 54 = sum of the weights
    check = 11 - total % 11
    if check == 11:
        check = 0
    if check == 10:
        return False
    return check == b[9] - 48


def _nhs_number_valid_slow(value: str) -> bool:
    total = sum(int(d) * w for d, w in zip(value[:9], range(10, 1, -1)))
    check = 11 - total % 11
    if check == 11:
        check = 0
    if check == 10:
        return False
    return check == int(value[9])


def check_identifier(w, ident: dict, path: str) -> None:
    if ident.get("system") != NHS_NUMBER_SYSTEM:
        return
    value = ident.get("value")
    if isinstance(value, str) and not nhs_number_valid(value):
        w.add("error", "value", f"The NHS number '{value}' is not valid (it must be 10 digits and pass the "
              "Modulus 11 check)", path + ".value")


def check_attachment(w, att: dict, path: str) -> None:
    data, size = att.get("data"), att.get("size")
    if not isinstance(data, str) or not isinstance(size, int) or isinstance(size, bool):
        return
    try:
        actual = len(base64.b64decode("".join(data.split()), validate=True))
    except (binascii.Error, ValueError):
        return  # the base64Binary check reports it
    if actual != size:
        w.add("error", "structure", f"Stated Attachment Size {size} does not match actual attachment size {actual}",
              path)


BY_TYPE = {"Identifier": check_identifier, "Attachment": check_attachment}
PRIMITIVES = PRIMITIVE_TYPES
