package smsc.interop;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.jsmpp.bean.Alphabet;
import org.jsmpp.bean.BindType;
import org.jsmpp.bean.DataCoding;
import org.jsmpp.bean.DeliverSm;
import org.jsmpp.bean.ESMClass;
import org.jsmpp.bean.GSMSpecificFeature;
import org.jsmpp.bean.GeneralDataCoding;
import org.jsmpp.bean.InterfaceVersion;
import org.jsmpp.bean.LongSMS;
import org.jsmpp.bean.MessageMode;
import org.jsmpp.bean.MessageType;
import org.jsmpp.bean.NumberingPlanIndicator;
import org.jsmpp.bean.RegisteredDelivery;
import org.jsmpp.bean.SMSCDeliveryReceipt;
import org.jsmpp.bean.TypeOfNumber;
import org.jsmpp.extra.NegativeResponseException;
import org.jsmpp.extra.ResponseTimeoutException;
import org.jsmpp.extra.SessionState;
import org.jsmpp.session.BindParameter;
import org.jsmpp.util.DeliveryReceiptState;

/**
 * An ESME built on jSMPP that plays the interop script of tests/smpp-peers against the SMSC:
 * bind, submit (GSM, UCS2, concatenated), receipts, MO, server-side unbind and rebind, unbind.
 * stdout carries only the script's lines; jSMPP's logs go to stderr (simplelogger.properties).
 *
 * <pre>JsmppPeer esme --host H --port P [--rx-port P2] --system-id ID --password PW
 *                  --mode trx|txrx --short-code CODE [--timeout-secs 90] [--expect-bind-status N]</pre>
 */
public final class JsmppPeer {

    private static final String STACK = "jsmpp";
    private static final String SOURCE = "447700900001";

    /** A failed step; main prints it as {@code FAIL <step>: <reason>}. */
    static final class Fail extends Exception {
        final String step;

        Fail(String step, String reason) {
            super(reason);
            this.step = step;
        }
    }

    private final Map<String, String> opts;
    private final boolean txrx;
    private final long deadline; // System.nanoTime() by which everything must be done
    private final Inbox inbox = new Inbox();
    private final List<PeerSession> sessions = new ArrayList<>(); // receiver first in txrx
    private final Set<String> submitted = new HashSet<>();
    private final Set<String> receipted = new HashSet<>();
    private final List<DeliverSm> earlyMo = new ArrayList<>(); // MO seen before step 4 asked

    private JsmppPeer(Map<String, String> opts) throws Fail {
        this.opts = opts;
        for (String key : List.of("--host", "--port", "--system-id", "--password", "--short-code")) {
            need(key);
        }
        String mode = need("--mode");
        if (!mode.equals("trx") && !mode.equals("txrx")) {
            throw new Fail("args", "--mode must be trx or txrx, not " + mode);
        }
        this.txrx = mode.equals("txrx");
        long secs = Long.parseLong(opts.getOrDefault("--timeout-secs", "90"));
        this.deadline = System.nanoTime() + secs * 1_000_000_000L;
    }

    public static void main(String[] args) {
        int code;
        try {
            if (args.length == 0 || !args[0].equals("esme")) {
                throw new Fail("args", "usage: JsmppPeer esme --host H --port P ... (only esme is implemented)");
            }
            new JsmppPeer(parse(args)).run();
            say("PASS");
            code = 0;
        } catch (Fail f) {
            say("FAIL " + f.step + ": " + f.getMessage());
            // Where jSMPP's threads stood, for a failure that is a wait that never ended.
            Thread.getAllStackTraces().forEach((t, stack) ->
                System.err.println("thread " + t.getName() + " " + t.getState() + "\n\tat "
                    + String.join("\n\tat ", Arrays.stream(stack).map(String::valueOf).toList())));
            code = 1;
        } catch (Exception e) {
            say("FAIL internal: " + e);
            e.printStackTrace();
            code = 1;
        }
        // jSMPP's reader and enquire_link threads are not daemons: leave without waiting for them.
        System.exit(code);
    }

    private void run() throws Exception {
        if (opts.containsKey("--expect-bind-status")) {
            refusedBind("refused-bind", Integer.parseInt(opts.get("--expect-bind-status")));
            return;
        }
        bind("bind", false);
        say("BOUND " + (txrx ? "txrx" : "trx"));

        submit("submit-gsm", "447700900101", gsm("Hello from " + STACK + " @ 100%"));
        submit("submit-ucs2", "447700900102", ucs2("Привет, 世界 " + STACK));
        submitLong("submit-long", "447700900103", longText());
        awaitReceipts("receipts");

        awaitMo("mo", "mo for " + STACK + " " + (txrx ? "txrx" : "trx"));

        say("WANT-UNBIND");
        awaitServerUnbind("server-unbind");
        bind("rebind", true);
        say("REBOUND");
        submit("submit-after-rebind", "447700900104", gsm("Hello again from " + STACK));
        awaitReceipts("receipt-after-rebind");

        unbindAll("unbind");
    }

    // ---- step 1 and 5: binding ------------------------------------------------------------

    /** trx: one transceiver; txrx: a receiver (--rx-port) first, then a transmitter. */
    private void bind(String step, boolean retry) throws Exception {
        sessions.clear();
        int port = Integer.parseInt(need("--port"));
        if (txrx) {
            int rxPort = Integer.parseInt(opts.getOrDefault("--rx-port", need("--port")));
            sessions.add(bindOne(step, BindType.BIND_RX, rxPort, retry));
            sessions.add(bindOne(step, BindType.BIND_TX, port, retry));
        } else {
            sessions.add(bindOne(step, BindType.BIND_TRX, port, retry));
        }
    }

    private BindParameter bindParameter(BindType type) throws Fail {
        return new BindParameter(type, need("--system-id"), need("--password"), "",
            TypeOfNumber.UNKNOWN, NumberingPlanIndicator.UNKNOWN, null, InterfaceVersion.IF_34);
    }

    /** One bind (a transceiver, or the receiver of txrx) that must be refused with this status. */
    private void refusedBind(String step, int want) throws Exception {
        int port = Integer.parseInt(txrx ? opts.getOrDefault("--rx-port", need("--port")) : need("--port"));
        PeerSession s = new PeerSession();
        try {
            s.connectAndBind(need("--host"), port, bindParameter(txrx ? BindType.BIND_RX : BindType.BIND_TRX),
                Math.max(Math.min(remainingMillis(), 5_000), 1));
            throw new Fail(step, "bound, expected command_status " + want);
        } catch (IOException e) {
            // jSMPP wraps the negative bind_resp in an IOException.
            Throwable c = e;
            while (c != null && !(c instanceof NegativeResponseException)) {
                c = c.getCause();
            }
            if (!(c instanceof NegativeResponseException n) || n.getCommandStatus() != want) {
                throw new Fail(step, "expected a bind refused with " + want + ": " + describe(e));
            }
        } finally {
            s.close();
        }
        say("BIND-REFUSED " + want);
    }

    private PeerSession bindOne(String step, BindType type, int port, boolean retry) throws Exception {
        BindParameter param = bindParameter(type);
        while (true) {
            PeerSession s = new PeerSession();
            s.setTransactionTimer(Math.min(10_000, Math.max(remainingMillis(), 1)));
            s.setEnquireLinkTimer(5_000); // short, so that the run exercises enquire_link too
            s.setMessageReceiverListener(inbox);
            s.addSessionStateListener(inbox);
            try {
                // Each attempt is capped: jSMPP can sit out its whole bind timeout on a connection
                // the server closed before bind_resp, and the retries must go on meanwhile.
                s.connectAndBind(need("--host"), port, param, Math.max(Math.min(remainingMillis(), 5_000), 1));
                return s;
            } catch (IOException e) {
                // jSMPP wraps both a refused connection and a negative bind_resp in IOException.
                s.close();
                String why = type + " to port " + port + " failed: " + describe(e);
                if (!retry || remainingMillis() <= 250) {
                    throw new Fail(step, why);
                }
                System.err.println("jsmpp-peer: " + why + "; retrying in 250 ms");
                Thread.sleep(250); // the script's retry pace, not an assertion
            }
        }
    }

    // ---- step 2: submits ------------------------------------------------------------------

    /** jSMPP has no GSM 03.38 charset: these texts go as ASCII bytes (so '@' is 0x40, not 0x00). */
    private static Payload gsm(String text) {
        return new Payload(text.getBytes(StandardCharsets.US_ASCII), new GeneralDataCoding(Alphabet.ALPHA_DEFAULT));
    }

    /** jSMPP has no UCS2 charset of its own either; UCS2 is UTF-16BE (the text is all BMP). */
    private static Payload ucs2(String text) {
        return new Payload(text.getBytes(StandardCharsets.UTF_16BE), new GeneralDataCoding(Alphabet.ALPHA_UCS2));
    }

    private record Payload(byte[] bytes, DataCoding coding) {}

    private static String longText() {
        String unit = "Long message from " + STACK + ". ";
        return unit.repeat(300 / unit.length() + 1).substring(0, 300);
    }

    private void submit(String step, String dest, Payload p) throws Exception {
        submitPart(step, dest, p.bytes(), p.coding(), new ESMClass());
    }

    /**
     * jSMPP's own splitter, LongSMS.splitMessage8Bit: 133-octet parts, each behind a UDH with the
     * 16-bit-reference concatenation element (06 08 04 RR RR TT SS). With data_coding 0 each octet
     * is one unpacked GSM character, and 133 characters fit the 152 septets a part has left.
     */
    private void submitLong(String step, String dest, String text) throws Exception {
        Payload p = gsm(text);
        ESMClass udhi = new ESMClass(MessageMode.DEFAULT, MessageType.DEFAULT, GSMSpecificFeature.UDHI);
        for (byte[] part : LongSMS.splitMessage8Bit(p.bytes())) {
            submitPart(step, dest, part, p.coding(), udhi);
        }
    }

    private void submitPart(String step, String dest, byte[] sm, DataCoding coding, ESMClass esm) throws Exception {
        PeerSession tx = sessions.get(sessions.size() - 1);
        String id;
        try {
            id = tx.submitShortMessage("", TypeOfNumber.INTERNATIONAL, NumberingPlanIndicator.ISDN, SOURCE,
                TypeOfNumber.INTERNATIONAL, NumberingPlanIndicator.ISDN, dest, esm, (byte) 0, (byte) 0,
                null, null, new RegisteredDelivery(SMSCDeliveryReceipt.SUCCESS_FAILURE), (byte) 0, coding,
                (byte) 0, sm).getMessageId();
        } catch (NegativeResponseException e) {
            throw new Fail(step, String.format("submit_sm_resp to %s had status 0x%08X", dest, e.getCommandStatus()));
        } catch (ResponseTimeoutException e) {
            throw new Fail(step, "no submit_sm_resp to " + dest + " within " + tx.getTransactionTimer() + " ms");
        }
        if (!submitted.add(id)) {
            throw new Fail(step, "the SMSC gave message id " + id + " twice");
        }
        say("SUBMITTED " + id);
    }

    // ---- step 3: receipts -----------------------------------------------------------------

    private void awaitReceipts(String step) throws Exception {
        while (!receipted.containsAll(submitted)) {
            Set<String> missing = new LinkedHashSet<>(submitted);
            missing.removeAll(receipted);
            handle(step, next(step, "receipts for " + missing), false);
        }
    }

    /** Checks one receipt against what was submitted and prints it. */
    private void onReceipt(String step, Inbox.Receipt r) throws Fail {
        String id = r.parsed().getId();
        DeliveryReceiptState stat = r.parsed().getFinalStatus();
        System.err.println("jsmpp-peer: receipt \"" + r.raw() + "\" parsed as " + r.parsed()
            + " (submit date " + r.parsed().getSubmitDate() + ", done date " + r.parsed().getDoneDate()
            + "), TLVs receipted_message_id=" + r.tlvId() + " message_state=" + r.tlvState()
            + String.format(", data_coding 0x%02X, hex %s", r.dcs(), r.hex()));
        if (r.tlvId() != null && !r.tlvId().equals(id)) {
            throw new Fail(step, "receipt text id " + id + " differs from receipted_message_id " + r.tlvId()
                + " in \"" + r.raw() + "\"");
        }
        if (!submitted.contains(id)) {
            throw new Fail(step, "receipt for an unknown message id " + id + ": \"" + r.raw() + "\"");
        }
        if (!receipted.add(id)) {
            throw new Fail(step, "second receipt for " + id + ": \"" + r.raw() + "\"");
        }
        if (stat != DeliveryReceiptState.DELIVRD) {
            throw new Fail(step, "receipt for " + id + " has stat " + stat + ": \"" + r.raw() + "\"");
        }
        if (r.tlvState() != null && r.tlvState() != 2) {
            throw new Fail(step, "receipt for " + id + " has message_state TLV " + r.tlvState() + ", not 2 (DELIVERED)");
        }
        say("RECEIPT " + id + " " + stat);
    }

    // ---- step 4: MO -----------------------------------------------------------------------

    private void awaitMo(String step, String text) throws Exception {
        say("WANT-MO " + text);
        for (DeliverSm sm : earlyMo) {
            if (isTheMo(sm, text)) {
                say("MO-OK");
                return;
            }
        }
        while (true) {
            Inbox.Event e = next(step, "the MO \"" + text + "\"");
            if (e instanceof Inbox.Mo mo && isTheMo(mo.sm(), text)) {
                say("MO-OK");
                return;
            }
            handle(step, e, false);
        }
    }

    /**
     * data_coding 0 is unpacked GSM 7-bit; jSMPP has no decoder for it, and for this text's letters,
     * digits and spaces the GSM default alphabet codes are the ASCII ones, so ASCII decodes it.
     */
    private boolean isTheMo(DeliverSm sm, String text) {
        String got = new String(sm.getShortMessage(), StandardCharsets.US_ASCII);
        boolean ok = code().equals(sm.getDestAddress()) && sm.getDataCoding() == 0 && !sm.isUdhi()
            && got.equals(text);
        if (!ok) {
            System.err.printf("jsmpp-peer: deliver_sm to %s dcs 0x%02X esm 0x%02X text \"%s\" is not the MO awaited%n",
                sm.getDestAddress(), sm.getDataCoding(), sm.getEsmClass(), got);
        }
        return ok;
    }

    // ---- step 5: the SMSC ends the sessions -----------------------------------------------

    private void awaitServerUnbind(String step) throws Exception {
        while (!sessions.stream().allMatch(s -> s.getSessionState() == SessionState.CLOSED)) {
            handle(step, next(step, "the SMSC to end the session(s), now " + states()), true);
        }
    }

    // ---- step 6: client unbind ------------------------------------------------------------

    private void unbindAll(String step) throws Exception {
        for (PeerSession s : sessions) {
            try {
                // 5 s bounds the wait for a response jSMPP may have dropped (see PeerSession).
                s.unbindChecked(Math.max(Math.min(remainingMillis(), 5_000), 1));
            } catch (NegativeResponseException e) {
                throw new Fail(step, String.format("unbind_resp had status 0x%08X", e.getCommandStatus()));
            } catch (ResponseTimeoutException e) {
                throw new Fail(step, "no unbind_resp in time");
            } finally {
                s.close();
            }
        }
        // A late receipt (a duplicate, say) or error that already came in still counts; our own
        // closes do not.
        for (Inbox.Event e; (e = inbox.next(0)) != null; ) {
            if (!(e instanceof Inbox.Closed)) {
                handle(step, e, false);
            }
        }
    }

    // ---- events ---------------------------------------------------------------------------

    private Inbox.Event next(String step, String what) throws Exception {
        Inbox.Event e = inbox.next(deadline - System.nanoTime());
        if (e == null) {
            throw new Fail(step, "timed out waiting for " + what);
        }
        return e;
    }

    /** Any event at any step: receipts are checked, MO kept, errors and unexpected closes fail. */
    private void handle(String step, Inbox.Event e, boolean closesExpected) throws Fail {
        if (e instanceof Inbox.Receipt r) {
            onReceipt(step, r);
        } else if (e instanceof Inbox.Mo mo) {
            earlyMo.add(mo.sm());
        } else if (e instanceof Inbox.Error err) {
            throw new Fail(step, err.reason());
        } else if (e instanceof Inbox.Closed c) {
            if (!closesExpected && sessions.contains(c.session())) {
                throw new Fail(step, "session closed unexpectedly (it was " + c.from() + ")");
            }
            if (closesExpected && c.from() != SessionState.UNBOUND) {
                // The SMSC is meant to unbind first; a bare close is worth seeing in the log.
                System.err.println("jsmpp-peer: session closed from " + c.from() + " without an unbind");
            }
        }
    }

    // ---- small things ---------------------------------------------------------------------

    private static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private List<SessionState> states() {
        return sessions.stream().map(PeerSession::getSessionState).toList();
    }

    private long remainingMillis() {
        return (deadline - System.nanoTime()) / 1_000_000;
    }

    private String code() {
        return opts.get("--short-code");
    }

    private String need(String key) throws Fail {
        String v = opts.get(key);
        if (v == null) {
            throw new Fail("args", "missing " + key);
        }
        return v;
    }

    private static String describe(Throwable e) {
        StringBuilder b = new StringBuilder(String.valueOf(e.getMessage()));
        for (Throwable c = e.getCause(); c != null; c = c.getCause()) {
            b.append(" <- ").append(c);
        }
        return b.toString();
    }

    private static Map<String, String> parse(String[] args) throws Fail {
        Map<String, String> m = new HashMap<>();
        for (int i = 1; i < args.length; i += 2) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                throw new Fail("args", "expected --option value at " + args[i]);
            }
            m.put(args[i], args[i + 1]);
        }
        return m;
    }
}
