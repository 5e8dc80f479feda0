package smsc.interop;

import static smsc.interop.CloudhopperPeer.hex;
import static smsc.interop.CloudhopperPeer.say;

import com.cloudhopper.commons.charset.CharsetUtil;
import com.cloudhopper.commons.gsm.GsmUtil;
import com.cloudhopper.smpp.SmppBindType;
import com.cloudhopper.smpp.SmppConstants;
import com.cloudhopper.smpp.SmppSession;
import com.cloudhopper.smpp.SmppSessionConfiguration;
import com.cloudhopper.smpp.impl.DefaultSmppClient;
import com.cloudhopper.smpp.impl.DefaultSmppSessionHandler;
import com.cloudhopper.smpp.pdu.DeliverSm;
import com.cloudhopper.smpp.pdu.EnquireLink;
import com.cloudhopper.smpp.pdu.PduRequest;
import com.cloudhopper.smpp.pdu.PduResponse;
import com.cloudhopper.smpp.pdu.SubmitSm;
import com.cloudhopper.smpp.pdu.SubmitSmResp;
import com.cloudhopper.smpp.pdu.Unbind;
import com.cloudhopper.smpp.tlv.Tlv;
import com.cloudhopper.smpp.type.Address;
import com.cloudhopper.smpp.type.SmppBindException;
import com.cloudhopper.smpp.type.SmppChannelException;
import com.cloudhopper.smpp.type.SmppTimeoutException;
import com.cloudhopper.smpp.util.DeliveryReceipt;
import com.cloudhopper.smpp.util.DeliveryReceiptException;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.BooleanSupplier;
import org.joda.time.DateTimeZone;

/** The ESME script of the peer protocol, on DefaultSmppClient sessions. */
final class Esme {
    private static final String STACK = "Cloudhopper";
    private static final Address SOURCE = new Address((byte) 1, (byte) 1, "447700900001");

    /** What the session handlers (netty I/O threads) hand to the main thread. */
    private sealed interface Event permits Receipt, Mo, Closed, Failure {}
    private record Receipt(String id, byte state, String tlvId, Byte tlvState) implements Event {}
    private record Mo(String dest, String text) implements Event {}
    private record Closed(String role) implements Event {}
    private record Failure(String reason) implements Event {}

    /** A failed step: printed as {@code FAIL <step>: <reason>}. */
    private static final class Fail extends Exception {
        Fail(String reason) { super(reason); }
    }

    private final String host, systemId, password, mode, shortCode;
    private final int port, rxPort;
    /** With --expect-bind-status: bind once and expect this refusal (0: run the script). */
    private final int expectBindStatus;
    private final long deadline;
    private final BlockingQueue<Event> events = new LinkedBlockingQueue<>();
    private final ExecutorService io;
    private final DefaultSmppClient client;
    /** Bound sessions by role: "trx", or "rx" and "tx". */
    private final Map<String, SmppSession> sessions = new LinkedHashMap<>();
    /** Every id submitted -> whether its receipt came. */
    private final Map<String, Boolean> submitted = new LinkedHashMap<>();
    private final Set<String> closed = new HashSet<>();
    private boolean expectClose, moOk;
    private String step = "bind";

    Esme(Map<String, String> o) {
        host = o.getOrDefault("host", "127.0.0.1");
        port = Integer.parseInt(CloudhopperPeer.required(o, "port"));
        rxPort = Integer.parseInt(o.getOrDefault("rx-port", String.valueOf(port)));
        systemId = CloudhopperPeer.required(o, "system-id");
        password = CloudhopperPeer.required(o, "password");
        mode = CloudhopperPeer.required(o, "mode");
        expectBindStatus = Integer.parseInt(o.getOrDefault("expect-bind-status", "0"));
        shortCode = CloudhopperPeer.required(o, "short-code");
        deadline = System.nanoTime()
                + TimeUnit.SECONDS.toNanos(Long.parseLong(o.getOrDefault("timeout-secs", "90")));
        if (!mode.equals("trx") && !mode.equals("txrx")) {
            throw new IllegalArgumentException("--mode must be trx or txrx");
        }
        io = Executors.newCachedThreadPool();
        client = new DefaultSmppClient(io, 2);
    }

    int run() {
        try {
            if (expectBindStatus != 0) {
                return refusedBind();
            }
            bindAll();
            say("BOUND " + mode);

            step = "submit";
            List<String> ids = new ArrayList<>();
            // GSM 03.38 through ch-commons-charset ('@' is 0x00 there).
            ids.add(submit("447700900101", SmppConstants.DATA_CODING_DEFAULT, (byte) 0,
                    CharsetUtil.encode("Hello from " + STACK + " @ 100%", CharsetUtil.CHARSET_GSM)));
            ids.add(submit("447700900102", SmppConstants.DATA_CODING_UCS2, (byte) 0,
                    CharsetUtil.encode("Привет, 世界 " + STACK, CharsetUtil.CHARSET_UCS_2)));
            byte[] longText = CharsetUtil.encode(
                    ("Long message from " + STACK + ". ").repeat(20).substring(0, 300),
                    CharsetUtil.CHARSET_GSM);
            byte ref = (byte) (System.nanoTime() & 0xff);
            for (byte[] part : GsmUtil.createConcatenatedBinaryShortMessages(longText, ref)) {
                ids.add(submit("447700900103", SmppConstants.DATA_CODING_DEFAULT,
                        SmppConstants.ESM_CLASS_UDHI_MASK, part));
            }

            step = "receipts";
            awaitEvents("receipts for " + ids, () -> ids.stream().allMatch(submitted::get));

            step = "mo";
            String moText = "mo for " + STACK + " " + mode;
            say("WANT-MO " + moText);
            awaitEvents("an MO '" + moText + "' to " + shortCode, () -> moOk);
            say("MO-OK");

            step = "server-unbind";
            expectClose = true;
            say("WANT-UNBIND");
            awaitEvents("the SMSC to end " + sessions.keySet(),
                    () -> closed.containsAll(sessions.keySet()));
            sessions.values().forEach(SmppSession::destroy);
            sessions.clear();
            rebind();
            expectClose = false;
            say("REBOUND");
            String last = submit("447700900104", SmppConstants.DATA_CODING_DEFAULT, (byte) 0,
                    CharsetUtil.encode("Again from " + STACK, CharsetUtil.CHARSET_GSM));
            awaitEvents("the receipt for " + last, () -> submitted.get(last));

            step = "unbind";
            // Cloudhopper's unbind sends unbind, waits (bounded) for unbind_resp, then closes.
            for (SmppSession s : sessions.values()) {
                s.unbind(remainingMs(5000));
                s.destroy();
            }
            sessions.clear();
            say("PASS");
            return 0;
        } catch (Exception e) {
            String reason = e instanceof Fail ? e.getMessage() : e.toString();
            say("FAIL " + step + ": " + reason.replace('\n', ' '));
            return 1;
        } finally {
            sessions.values().forEach(SmppSession::destroy);
            client.destroy();
            io.shutdownNow();
        }
    }

    /** One bind (a transceiver, or the receiver of txrx) that must be refused with the status. */
    private int refusedBind() throws Exception {
        step = "refused bind";
        try {
            sessions.put("once", mode.equals("trx")
                    ? bind(SmppBindType.TRANSCEIVER, port, "trx")
                    : bind(SmppBindType.RECEIVER, rxPort, "rx"));
            throw new Fail("bound, expected status " + expectBindStatus);
        } catch (SmppBindException e) {
            int status = e.getBindResponse().getCommandStatus();
            if (status != expectBindStatus) {
                throw new Fail(String.format("bind refused with 0x%08x, expected 0x%08x", status, expectBindStatus));
            }
        }
        say("BIND-REFUSED " + expectBindStatus);
        say("PASS");
        return 0;
    }

    private long remainingMs(long cap) throws Fail {
        long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
        if (left <= 0) {
            throw new Fail("timed out");
        }
        return Math.min(left, cap);
    }

    /** Step 1: trx is one transceiver; txrx a receiver (first) and a transmitter. */
    private void bindAll() throws Exception {
        if (mode.equals("trx")) {
            sessions.put("trx", bind(SmppBindType.TRANSCEIVER, port, "trx"));
        } else {
            sessions.put("rx", bind(SmppBindType.RECEIVER, rxPort, "rx"));
            sessions.put("tx", bind(SmppBindType.TRANSMITTER, port, "tx"));
        }
    }

    private SmppSession bind(SmppBindType type, int toPort, String role) throws Exception {
        SmppSessionConfiguration cfg = new SmppSessionConfiguration(type, systemId, password);
        cfg.setName(STACK + "." + role);
        cfg.setHost(host);
        cfg.setPort(toPort);
        cfg.setSystemType("");
        cfg.setInterfaceVersion(SmppConstants.VERSION_3_4);
        cfg.setConnectTimeout(remainingMs(5000));
        cfg.setBindTimeout(remainingMs(5000));
        return client.bind(cfg, new Handler(role));
    }

    /** Step 5: bind again every 250 ms until the edge is back (refused or failed binds retry). */
    private void rebind() throws Exception {
        while (true) {
            try {
                bindAll();
                return;
            } catch (SmppChannelException | SmppBindException | SmppTimeoutException e) {
                System.err.println("rebind: " + e.getMessage());
                sessions.values().forEach(SmppSession::destroy);
                sessions.clear();
                if (System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(250) > deadline) {
                    throw new Fail("timed out rebinding; last attempt: " + e.getMessage());
                }
                Thread.sleep(250); // the retry interval, not an assertion
            }
        }
    }

    private String submit(String dest, byte dataCoding, byte esmClass, byte[] message) throws Exception {
        SubmitSm sm = new SubmitSm();
        sm.setSourceAddress(SOURCE);
        sm.setDestAddress(new Address((byte) 1, (byte) 1, dest));
        sm.setRegisteredDelivery(SmppConstants.REGISTERED_DELIVERY_SMSC_RECEIPT_REQUESTED);
        sm.setDataCoding(dataCoding);
        sm.setEsmClass(esmClass);
        sm.setShortMessage(message);
        SubmitSmResp resp = sessions.get(mode.equals("trx") ? "trx" : "tx").submit(sm, remainingMs(10000));
        if (resp.getCommandStatus() != SmppConstants.STATUS_OK) {
            throw new Fail(String.format("submit_sm to %s answered 0x%08x (%s)",
                    dest, resp.getCommandStatus(), resp.getResultMessage()));
        }
        String id = resp.getMessageId();
        if (id == null || id.isEmpty()) {
            throw new Fail("submit_sm_resp status 0 without a message_id");
        }
        if (submitted.putIfAbsent(id, false) != null) {
            throw new Fail("message_id " + id + " given twice");
        }
        say("SUBMITTED " + id);
        return id;
    }

    /** Handles the handlers' events until done holds; bounded by the overall deadline. */
    private void awaitEvents(String what, BooleanSupplier done) throws Exception {
        while (!done.getAsBoolean()) {
            long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
            Event ev = left > 0 ? events.poll(left, TimeUnit.MILLISECONDS) : null;
            if (ev == null) {
                throw new Fail("timed out waiting for " + what);
            }
            handle(ev);
        }
    }

    private void handle(Event ev) throws Fail {
        if (ev instanceof Failure f) {
            throw new Fail(f.reason());
        } else if (ev instanceof Closed c) {
            if (!expectClose) {
                throw new Fail("session " + c.role() + " closed unexpectedly");
            }
            closed.add(c.role());
        } else if (ev instanceof Mo m) {
            if (m.dest().equals(shortCode) && m.text().equals("mo for " + STACK + " " + mode)) {
                moOk = true;
            } else {
                System.err.println("ignoring MO to " + m.dest() + ": " + m.text());
            }
        } else if (ev instanceof Receipt r) {
            Boolean seen = submitted.get(r.id());
            if (seen == null) {
                throw new Fail("receipt for unknown id " + r.id() + " (submitted " + submitted.keySet() + ")");
            }
            if (seen) {
                throw new Fail("second receipt for " + r.id());
            }
            if (r.tlvId() != null && !r.tlvId().equals(r.id())) {
                throw new Fail("receipted_message_id " + r.tlvId() + " but text id " + r.id());
            }
            if (r.state() != SmppConstants.STATE_DELIVERED
                    || (r.tlvState() != null && r.tlvState() != SmppConstants.STATE_DELIVERED)) {
                throw new Fail("receipt for " + r.id() + ": stat " + DeliveryReceipt.toStateText(r.state())
                        + ", message_state " + r.tlvState());
            }
            submitted.put(r.id(), true);
            say("RECEIPT " + r.id() + " " + DeliveryReceipt.toStateText(r.state()));
        }
    }

    /** Runs on netty I/O threads: answers at once and hands the facts to the main thread. */
    private final class Handler extends DefaultSmppSessionHandler {
        private final String role;
        /** Cloudhopper may report one close twice (closed channel, then its exception). */
        private final AtomicBoolean closeReported = new AtomicBoolean();

        Handler(String role) {
            this.role = role;
        }

        @Override
        public PduResponse firePduRequestReceived(PduRequest req) {
            if (req instanceof DeliverSm dsm) {
                if (role.equals("tx")) {
                    events.add(new Failure("deliver_sm on the transmitter session"));
                } else if ((dsm.getEsmClass() & 0x3C) == SmppConstants.ESM_CLASS_MT_SMSC_DELIVERY_RECEIPT) {
                    events.add(receipt(dsm));
                } else {
                    events.add(new Mo(dsm.getDestAddress().getAddress(), CloudhopperPeer.text(dsm)));
                }
                return dsm.createResponse();
            }
            if (req instanceof EnquireLink) {
                return req.createResponse();
            }
            if (req instanceof Unbind) {
                // The channel closes next: fireChannelUnexpectedlyClosed reports it.
                System.err.println(role + ": unbind from the SMSC");
                return req.createResponse();
            }
            events.add(new Failure("unexpected " + req.getName() + " on " + role));
            return super.firePduRequestReceived(req);
        }

        private Event receipt(DeliverSm dsm) {
            String text = CloudhopperPeer.text(dsm);
            try {
                DeliveryReceipt dr = DeliveryReceipt.parseShortMessage(text, DateTimeZone.UTC);
                Tlv id = dsm.getOptionalParameter(SmppConstants.TAG_RECEIPTED_MSG_ID);
                Tlv state = dsm.getOptionalParameter(SmppConstants.TAG_MSG_STATE);
                return new Receipt(dr.getMessageId(), dr.getState(),
                        id == null ? null : id.getValueAsString(),
                        state == null ? null : state.getValueAsByte());
            } catch (DeliveryReceiptException | RuntimeException e) {
                return new Failure("receipt not parsed (" + e.getMessage() + "): text [" + text
                        + "] short_message " + hex(dsm.getShortMessage()));
            } catch (Exception e) { // TlvConvertException
                return new Failure("receipt TLV not read: " + e + " in " + dsm);
            }
        }

        @Override
        public void fireChannelUnexpectedlyClosed() {
            if (closeReported.compareAndSet(false, true)) {
                events.add(new Closed(role));
            }
        }
    }
}
