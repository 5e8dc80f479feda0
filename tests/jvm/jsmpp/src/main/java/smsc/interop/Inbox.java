package smsc.interop;

import java.nio.charset.StandardCharsets;
import java.util.HexFormat;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import org.jsmpp.bean.AlertNotification;
import org.jsmpp.bean.DataSm;
import org.jsmpp.bean.DeliverSm;
import org.jsmpp.bean.DeliveryReceipt;
import org.jsmpp.bean.OptionalParameter;
import org.jsmpp.extra.ProcessRequestException;
import org.jsmpp.extra.SessionState;
import org.jsmpp.session.DataSmResult;
import org.jsmpp.session.MessageReceiverListener;
import org.jsmpp.session.Session;
import org.jsmpp.session.SessionStateListener;
import org.jsmpp.util.InvalidDeliveryReceiptException;

/**
 * jSMPP's callbacks (deliver_sm, session state), registered on every session, turned into events
 * for the script's thread, so that every check and every stdout line happens there, in order.
 */
final class Inbox implements MessageReceiverListener, SessionStateListener {

    sealed interface Event permits Receipt, Mo, Closed, Error {}

    /** A receipt as jSMPP's parser read it, with the TLVs that back it up (null when absent). */
    record Receipt(DeliveryReceipt parsed, String tlvId, Byte tlvState, String raw, String hex, byte dcs)
        implements Event {}

    record Mo(DeliverSm sm) implements Event {}

    /** A session that had been bound is closed; {@code from} is the state it left. */
    record Closed(Session session, SessionState from) implements Event {}

    record Error(String reason) implements Event {}

    private final BlockingQueue<Event> events = new LinkedBlockingQueue<>();

    /** The next event, or null when none came within {@code nanos}. */
    Event next(long nanos) throws InterruptedException {
        return events.poll(Math.max(nanos, 0), TimeUnit.NANOSECONDS);
    }

    @Override
    public void onAcceptDeliverSm(DeliverSm sm) throws ProcessRequestException {
        // Returning normally is jSMPP's way of answering deliver_sm_resp with status 0.
        if (!sm.isSmscDeliveryReceipt()) {
            events.add(new Mo(sm));
            return;
        }
        byte[] raw = sm.getShortMessage();
        String text = new String(raw, StandardCharsets.ISO_8859_1);
        try {
            DeliveryReceipt parsed = sm.getShortMessageAsDeliveryReceipt();
            OptionalParameter.Receipted_message_id id =
                sm.getOptionalParameter(OptionalParameter.Receipted_message_id.class);
            OptionalParameter.Message_state state =
                sm.getOptionalParameter(OptionalParameter.Message_state.class);
            events.add(new Receipt(parsed, id == null ? null : id.getValueAsString(),
                state == null ? null : state.getValue(), text, HexFormat.of().formatHex(raw), sm.getDataCoding()));
        } catch (InvalidDeliveryReceiptException e) {
            // If jSMPP cannot read our receipt, the bytes are the finding: keep them whole.
            String why = e.getCause() != null ? e.getCause().toString() : e.getMessage();
            events.add(new Error("jSMPP's DeliveryReceipt parser rejected a receipt (" + why + "): \""
                + text + "\" hex " + HexFormat.of().formatHex(raw)));
        }
    }

    @Override
    public void onAcceptAlertNotification(AlertNotification alertNotification) {
        System.err.println("jsmpp-peer: ignoring alert_notification");
    }

    @Override
    public DataSmResult onAcceptDataSm(DataSm dataSm, Session source) throws ProcessRequestException {
        // The script never involves data_sm: make it a failure rather than pretend to take it.
        events.add(new Error("unexpected data_sm from the SMSC"));
        throw new ProcessRequestException("data_sm not expected", 0x00000003); // ESME_RINVCMDID
    }

    @Override
    public void onStateChange(SessionState newState, SessionState oldState, Session source) {
        System.err.println("jsmpp-peer: session " + source.getSessionId() + " " + oldState + " -> " + newState);
        // A failed bind goes OPEN -> CLOSED; only the end of a session that was bound is news.
        if (newState == SessionState.CLOSED && oldState != SessionState.OPEN) {
            events.add(new Closed(source, oldState));
        }
    }
}
