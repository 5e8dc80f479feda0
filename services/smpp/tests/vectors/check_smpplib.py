#!/usr/bin/env python3
"""Decodes the byte-exact vectors (the same files the Rust tests encode to and decode
from) with python smpplib, an independent SMPP implementation, and checks each field.
Run by tests/run; exits non-zero on any mismatch."""
import pathlib
import sys

import smpplib.smpp


class _Client:
    """smpplib wants a client to number PDUs; parsing keeps the wire's sequence."""

    def next_sequence(self):
        return 0


HERE = pathlib.Path(__file__).parent
RECEIPT = (b"id:0123456789abcdef sub:001 dlvrd:001 submit date:2611270300 "
           b"done date:2611270301 stat:DELIVRD err:000 text:Hello")
EXPECT = {
    "bind_transceiver": ("bind_transceiver", 1, 0, dict(
        system_id=b"demo", password=b"secret", system_type=b"", interface_version=0x34,
        addr_ton=0, addr_npi=0, address_range=b"")),
    "bind_transceiver_resp": ("bind_transceiver_resp", 1, 0, dict(
        system_id=b"smsc", sc_interface_version=0x34)),
    "submit_sm_gsm": ("submit_sm", 2, 0, dict(
        source_addr_ton=5, source_addr_npi=0, source_addr=b"Bank",
        dest_addr_ton=1, dest_addr_npi=1, destination_addr=b"447700900123",
        registered_delivery=1, data_coding=0, sm_length=15,
        # GSM 03.38 unpacked: '@' 0x00, '€' ESC 0x65, '{' ESC 0x28, 'ß' 0x1E.
        short_message=b"Hello \x00 \x1b\x65 \x1b\x28 \x1e")),
    "submit_sm_ucs2": ("submit_sm", 3, 0, dict(
        source_addr=b"79000000000", destination_addr=b"79161234567", data_coding=8,
        short_message="Привет 😀".encode("utf-16-be"))),
    "submit_sm_resp": ("submit_sm_resp", 2, 0, dict(message_id=b"0123456789abcdef")),
    "deliver_sm_receipt": ("deliver_sm", 7, 0, dict(
        source_addr=b"447700900123", destination_addr=b"Bank", dest_addr_ton=5, esm_class=4,
        short_message=RECEIPT, receipted_message_id=b"0123456789abcdef", message_state=2,
        network_error_code=b"\x03\x00\x00")),
    "generic_nack": ("generic_nack", 42, 3, {}),
    "enquire_link": ("enquire_link", 5, 0, {}),
}


def main():
    failures = 0
    for name, (command, seq, status, fields) in EXPECT.items():
        raw = bytes.fromhex((HERE / f"{name}.hex").read_text().strip())
        pdu = smpplib.smpp.parse_pdu(raw, client=_Client())
        got = dict(command=pdu.command, sequence=pdu.sequence, status=pdu.status, length=pdu.length)
        want = dict(command=command, sequence=seq, status=status, length=len(raw))
        got.update({k: getattr(pdu, k, None) for k in fields})
        want.update(fields)
        bad = {k: (got[k], v) for k, v in want.items() if got[k] != v}
        print(f"{'FAIL' if bad else 'ok  '} {name}" + (f" {bad}" if bad else ""))
        failures += bool(bad)
    print(f"{len(EXPECT) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
