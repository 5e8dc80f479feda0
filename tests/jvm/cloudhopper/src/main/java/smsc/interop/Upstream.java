package smsc.interop;

import static smsc.interop.CloudhopperPeer.say;

import com.cloudhopper.commons.charset.CharsetUtil;
import com.cloudhopper.commons.util.windowing.WindowFuture;
import com.cloudhopper.smpp.SmppBindType;
import com.cloudhopper.smpp.SmppConstants;
import com.cloudhopper.smpp.SmppServerConfiguration;
import com.cloudhopper.smpp.SmppServerHandler;
import com.cloudhopper.smpp.SmppServerSession;
import com.cloudhopper.smpp.SmppSessionConfiguration;
import com.cloudhopper.smpp.impl.DefaultSmppServer;
import com.cloudhopper.smpp.impl.DefaultSmppSessionHandler;
import com.cloudhopper.smpp.pdu.BaseBind;
import com.cloudhopper.smpp.pdu.BaseBindResp;
import com.cloudhopper.smpp.pdu.DeliverSm;
import com.cloudhopper.smpp.pdu.EnquireLink;
import com.cloudhopper.smpp.pdu.PduRequest;
import com.cloudhopper.smpp.pdu.PduResponse;
import com.cloudhopper.smpp.pdu.SubmitSm;
import com.cloudhopper.smpp.pdu.SubmitSmResp;
import com.cloudhopper.smpp.pdu.Unbind;
import com.cloudhopper.smpp.tlv.Tlv;
import com.cloudhopper.smpp.type.Address;
import com.cloudhopper.smpp.type.SmppProcessingException;
import com.cloudhopper.smpp.util.DeliveryReceipt;
import com.cloudhopper.smpp.util.TlvUtil;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.joda.time.DateTime;
import org.joda.time.DateTimeZone;

/**
 * A third-party SMSC on DefaultSmppServer: answers submit_sm, sends DELIVRD receipts built
 * with DeliveryReceipt, keeps the ones no session took and sends them again on the next bind.
 */
final class Upstream implements SmppServerHandler {
    private static final long DELIVER_TIMEOUT_MS = 10_000;

    /** A receipt to send: its text is fixed once, the deliver_sm is built for each attempt. */
    private record Pending(String id, Address source, Address dest, byte[] text) {}

    private final String systemId, password;
    private final int port, dropEvery;
    /**
     * Message ids: Cloudhopper has no generator, so a counter written as lowercase hex
     * (DeliveryReceipt.toMessageIdAsHexString), seeded with the clock so that a restarted
     * peer does not reuse ids.
     */
    private final AtomicLong nextId = new AtomicLong(System.currentTimeMillis());
    private final AtomicLong answered = new AtomicLong();
    /** Bound sessions able to receive (transceiver, receiver), by Cloudhopper's session id. */
    private final Map<Long, SmppServerSession> receivers = new ConcurrentHashMap<>();
    /** Receipts not yet answered with status 0, in order; touched by the worker thread only. */
    private final Map<String, Pending> kept = new LinkedHashMap<>();
    /** Receipts go out here, never on a netty I/O thread (a deliver_sm waits for its resp). */
    private final ScheduledExecutorService worker = Executors.newSingleThreadScheduledExecutor();

    Upstream(Map<String, String> o) {
        port = Integer.parseInt(CloudhopperPeer.required(o, "port"));
        systemId = CloudhopperPeer.required(o, "system-id");
        password = CloudhopperPeer.required(o, "password");
        dropEvery = Integer.parseInt(o.getOrDefault("drop-every", "0"));
    }

    void run() throws Exception {
        SmppServerConfiguration cfg = new SmppServerConfiguration();
        cfg.setName("CloudhopperUpstream");
        cfg.setHost("127.0.0.1");
        cfg.setPort(port != 0 ? port : freePort());
        cfg.setSystemId("cloudhopper");
        cfg.setNonBlockingSocketsEnabled(true);
        cfg.setDefaultWindowSize(10);
        cfg.setDefaultRequestExpiryTimeout(30_000);
        cfg.setDefaultWindowMonitorInterval(15_000);
        DefaultSmppServer server = new DefaultSmppServer(cfg, this, Executors.newCachedThreadPool(),
                Executors.newScheduledThreadPool(1));
        server.start();
        say("LISTENING " + cfg.getPort());
        Thread.currentThread().join(); // until killed
    }

    /** DefaultSmppServer does not expose its bound port, so port 0 is resolved beforehand. */
    private static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    @Override
    public void sessionBindRequested(Long sessionId, SmppSessionConfiguration cfg, BaseBind bind)
            throws SmppProcessingException {
        if (!systemId.equals(cfg.getSystemId())) {
            throw new SmppProcessingException(SmppConstants.STATUS_BINDFAIL, null);
        }
        if (!password.equals(cfg.getPassword())) {
            throw new SmppProcessingException(SmppConstants.STATUS_INVPASWD, null);
        }
    }

    @Override
    public void sessionCreated(Long sessionId, SmppServerSession session, BaseBindResp resp) {
        session.serverReady(new SessionHandler(session)); // sends the bind_resp
        System.err.println("bound " + session.getBindType() + " session " + sessionId);
        if (session.getBindType() != SmppBindType.TRANSMITTER) {
            receivers.put(sessionId, session);
            worker.execute(this::resendKept);
        }
    }

    @Override
    public void sessionDestroyed(Long sessionId, SmppServerSession session) {
        System.err.println("session " + sessionId + " ended");
        receivers.remove(sessionId);
        session.destroy();
    }

    private final class SessionHandler extends DefaultSmppSessionHandler {
        private final SmppServerSession session;
        private volatile boolean dropped;

        SessionHandler(SmppServerSession session) {
            this.session = session;
        }

        @Override
        public PduResponse firePduRequestReceived(PduRequest req) {
            if (dropped) {
                // Cloudhopper still hands us what it had read before our close: no answer.
                return null;
            }
            if (req instanceof SubmitSm sm) {
                return submitted(sm);
            }
            if (req instanceof EnquireLink || req instanceof Unbind) {
                return req.createResponse();
            }
            return super.firePduRequestReceived(req);
        }

        private PduResponse submitted(SubmitSm sm) {
            String id = DeliveryReceipt.toMessageIdAsHexString(nextId.incrementAndGet());
            SubmitSmResp resp = sm.createResponse();
            resp.setMessageId(id);
            say("SUBMIT " + id + " " + sm.getDestAddress().getAddress());
            int asked = sm.getRegisteredDelivery() & SmppConstants.REGISTERED_DELIVERY_SMSC_RECEIPT_MASK;
            if (asked == SmppConstants.REGISTERED_DELIVERY_SMSC_RECEIPT_REQUESTED
                    || asked == SmppConstants.REGISTERED_DELIVERY_SMSC_RECEIPT_ON_SUCCESS) {
                DeliveryReceipt dr = new DeliveryReceipt();
                dr.setMessageId(id);
                dr.setSubmitCount(1);
                dr.setDeliveredCount(1);
                dr.setSubmitDate(new DateTime(DateTimeZone.UTC));
                dr.setDoneDate(new DateTime(DateTimeZone.UTC));
                dr.setState(SmppConstants.STATE_DELIVERED);
                dr.setErrorCode(0);
                dr.setText(CloudhopperPeer.text(sm)); // toShortMessage keeps the first 20
                Pending p = new Pending(id, sm.getDestAddress(), sm.getSourceAddress(),
                        CharsetUtil.encode(dr.toShortMessage(), CharsetUtil.CHARSET_GSM));
                worker.schedule(() -> deliverNew(p), 20, TimeUnit.MILLISECONDS);
            }
            if (dropEvery > 0 && answered.incrementAndGet() % dropEvery == 0) {
                // Answer ourselves so the drop follows the written response, then close
                // the connection without an unbind.
                try {
                    session.sendResponsePdu(resp);
                } catch (Exception e) {
                    System.err.println("submit_sm_resp before the drop: " + e);
                }
                dropped = true;
                session.close();
                say("DROPPED");
                return null;
            }
            return resp;
        }
    }

    private void deliverNew(Pending p) {
        kept.put(p.id(), p);
        send(p);
    }

    /** On each bind: every kept receipt again, in order. */
    private void resendKept() {
        for (Pending p : new ArrayList<>(kept.values())) {
            send(p);
        }
    }

    /** One attempt on a bound receiving session; the receipt stays kept unless answered 0. */
    private void send(Pending p) {
        SmppServerSession session = receivers.values().stream()
                .filter(SmppServerSession::isBound).findFirst().orElse(null);
        if (session == null) {
            System.err.println("receipt " + p.id() + " kept: no receiving session");
            return;
        }
        try {
            DeliverSm d = new DeliverSm();
            d.setSourceAddress(p.source());
            d.setDestAddress(p.dest());
            d.setEsmClass(SmppConstants.ESM_CLASS_MT_SMSC_DELIVERY_RECEIPT);
            d.setDataCoding(SmppConstants.DATA_CODING_DEFAULT);
            d.setShortMessage(p.text());
            d.addOptionalParameter(TlvUtil.createNullTerminatedStringTlv(SmppConstants.TAG_RECEIPTED_MSG_ID, p.id()));
            d.addOptionalParameter(new Tlv(SmppConstants.TAG_MSG_STATE, new byte[] {SmppConstants.STATE_DELIVERED}));
            WindowFuture<Integer, PduRequest, PduResponse> f = session.sendRequestPdu(d, DELIVER_TIMEOUT_MS, true);
            if (!f.await(DELIVER_TIMEOUT_MS) || !f.isSuccess()) {
                System.err.println("receipt " + p.id() + " kept: no answer (" + f.getCause() + ")");
            } else if (f.getResponse().getCommandStatus() != SmppConstants.STATUS_OK) {
                System.err.printf("receipt %s kept: deliver_sm_resp 0x%08x%n", p.id(), f.getResponse().getCommandStatus());
            } else {
                kept.remove(p.id());
            }
        } catch (Exception e) {
            System.err.println("receipt " + p.id() + " kept: " + e);
        }
    }
}
