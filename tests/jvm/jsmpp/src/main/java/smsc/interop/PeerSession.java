package smsc.interop;

import org.jsmpp.session.SMPPSession;
import org.jsmpp.session.UnbindCommandTask;

/**
 * jSMPP's SMPPSession with an unbind that reports a missing or negative unbind_resp (jSMPP's own
 * unbindAndClose() only logs those).
 */
final class PeerSession extends SMPPSession {

    /**
     * Sends unbind and waits up to {@code millis} for unbind_resp: a ResponseTimeoutException or
     * NegativeResponseException otherwise. jSMPP reads on one thread and handles each PDU on
     * another, so an SMSC that closed the connection right after its unbind_resp would make the
     * reading thread close the session before the handler took the answer: the SMSC leaves the
     * close to the ESME, and this checks it.
     */
    void unbindChecked(long millis) throws Exception {
        executeSendCommand(new UnbindCommandTask(pduSender()), millis);
    }
}
