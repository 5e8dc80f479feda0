#!/usr/bin/env python3
"""A real third-party ESME against the edge: python smpplib binds transceiver, submits a
GSM and a UCS2 message, checks each submit_sm_resp (status 0, a 32-hex message_id),
receives one deliver_sm and answers it (smpplib answers ESME_ROK), then unbinds.

Prints a JSON summary on stdout; exits 1 on any failure.
Usage: smpplib_client.py PORT SYSTEM_ID PASSWORD   (driven by tests/deliver.rs)
"""
import json
import re
import signal
import sys

import smpplib.client
import smpplib.consts
import smpplib.gsm

TEXTS = ("Hello from smpplib @ 100%", "Привет 😀")
SOURCE, DEST = "15550001", "15559999"


def main():
    port, system_id, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    # A hung edge fails this script rather than the test runner's patience.
    signal.alarm(30)
    summary = {"bound": False, "submits": [], "deliveries": [], "unbind_status": None}
    failures = []

    client = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    client.set_message_sent_handler(
        lambda pdu: summary["submits"].append(
            {"sequence": pdu.sequence, "status": pdu.status,
             "message_id": pdu.message_id.decode("ascii", "replace") if pdu.message_id else ""}))

    def received(pdu):
        tlv = getattr(pdu, "receipted_message_id", None)
        summary["deliveries"].append({
            "esm_class": pdu.esm_class,
            "receipted_message_id": tlv.decode("ascii").rstrip("\0") if tlv else None,
            "message_state": getattr(pdu, "message_state", None),
            "text": pdu.short_message.decode("ascii", "replace"),
        })
        return smpplib.consts.SMPP_ESME_ROK

    client.set_message_received_handler(received)
    # Error statuses are recorded (and checked below) instead of raised mid-read.
    client.set_error_pdu_handler(lambda pdu: None)

    client.connect()
    try:
        resp = client.bind_transceiver(system_id=system_id, password=password)
        summary["bound"] = resp.status == 0
        sent = []
        for text in TEXTS:
            parts, coding, esm_class = smpplib.gsm.make_parts(text)
            assert len(parts) == 1, text
            pdu = client.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_INTL,
                source_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                source_addr=SOURCE,
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                destination_addr=DEST,
                short_message=parts[0],
                data_coding=coding,
                esm_class=esm_class,
                registered_delivery=True,
            )
            sent.append(pdu.sequence)
        while len(summary["submits"]) < len(TEXTS) or not summary["deliveries"]:
            client.read_once()
        resp = client.unbind()
        summary["unbind_status"] = resp.status if resp.command == "unbind_resp" else resp.command
    finally:
        client.disconnect()

    if not summary["bound"]:
        failures.append("bind refused")
    if sorted(s["sequence"] for s in summary["submits"]) != sorted(sent):
        failures.append("submit_sm_resp sequence numbers do not match the submits")
    for s in summary["submits"]:
        if s["status"] != 0:
            failures.append(f"submit {s['sequence']} answered status {s['status']}")
        if not re.fullmatch(r"[0-9a-f]{32}", s["message_id"]):
            failures.append(f"submit {s['sequence']} message_id {s['message_id']!r}")
    if len(summary["deliveries"]) != 1:
        failures.append(f"{len(summary['deliveries'])} deliver_sm received")
    if summary["unbind_status"] != 0:
        failures.append(f"unbind answered {summary['unbind_status']!r}")

    summary["failures"] = failures
    print(json.dumps(summary, ensure_ascii=False))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
