"""An X.509 certificate's subject and issuer, read from its DER bytes as short text (pure)."""

from __future__ import annotations

from sshwrap.core.greetings import printable

#: Attribute types shown by their short names (2.5.4.x); others are left out.
_ATTRIBUTES = {3: "CN", 10: "O", 11: "OU", 6: "C", 7: "L", 8: "ST"}
_SEQUENCE, _SET, _OID, _BMP_STRING = 0x30, 0x31, 0x06, 0x1E


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """The tag at ``pos``, and where its contents start and end."""
    if pos + 2 > len(data):
        raise ValueError("truncated")
    tag, length, pos = data[pos], data[pos + 1], pos + 2
    if length & 0x80:
        size = length & 0x7F
        if not 0 < size <= 4 or pos + size > len(data):
            raise ValueError("bad length")
        length, pos = int.from_bytes(data[pos:pos + size], "big"), pos + size
    if pos + length > len(data):
        raise ValueError("truncated")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    found = []
    while start < end:
        tag, content, after = _tlv(data, start)
        found.append((tag, content, after))
        start = after
    return found


def _name(data: bytes, start: int, end: int) -> str:
    """A distinguished name as ``CN=..., O=...`` (the attributes sshwrap names)."""
    parts = []
    for tag, rdn_start, rdn_end in _children(data, start, end):
        if tag != _SET:
            raise ValueError("not a name")
        for _, pair_start, pair_end in _children(data, rdn_start, rdn_end):
            (oid_tag, oid_start, oid_end), (value_tag, value_start, value_end), *_ = \
                _children(data, pair_start, pair_end)
            oid = data[oid_start:oid_end]
            if oid_tag != _OID or len(oid) != 3 or oid[:2] != b"\x55\x04":
                continue
            short = _ATTRIBUTES.get(oid[2])
            if short is None:
                continue
            raw = data[value_start:value_end]
            value = raw.decode("utf-16-be", "replace").encode() if value_tag == _BMP_STRING \
                else raw
            parts.append(f"{short}={printable(value, 64)}")
    return ", ".join(parts)


def certificate_names(der: bytes) -> tuple[str, str]:
    """(subject, issuer) of a DER certificate; ValueError when it is not one."""
    tag, start, end = _tlv(der, 0)
    if tag != _SEQUENCE:
        raise ValueError("not a certificate")
    tag, start, end = _tlv(der, start)  # tbsCertificate
    if tag != _SEQUENCE:
        raise ValueError("not a certificate")
    fields = _children(der, start, end)
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5 or fields[2][0] != _SEQUENCE or fields[4][0] != _SEQUENCE:
        raise ValueError("not a certificate")
    return _name(der, fields[4][1], fields[4][2]), _name(der, fields[2][1], fields[2][2])


def describe_certificate(der: bytes) -> str:
    """``CN=db.example, self-signed``, or the subject and its issuer's name."""
    try:
        subject, issuer = certificate_names(der)
    except (ValueError, IndexError):
        return "a certificate sshwrap cannot read"
    subject = subject or "no subject name"
    if issuer == subject:
        return f"{subject}, self-signed"
    return f"{subject}; issuer {issuer or 'unnamed'}"
