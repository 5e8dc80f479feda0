package smsc.interop;

import com.cloudhopper.commons.charset.CharsetUtil;
import com.cloudhopper.commons.gsm.GsmUtil;
import com.cloudhopper.smpp.SmppConstants;
import com.cloudhopper.smpp.pdu.BaseSm;
import com.cloudhopper.smpp.tlv.Tlv;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;

/**
 * Cloudhopper SMPP interop peer: {@code esme} (an ESME against our SMSC) or {@code upstream}
 * (a third-party SMSC our upstream connector binds to). The stdout line protocol is the
 * harness's (tests/smpp-peers); logs go to stderr.
 */
public final class CloudhopperPeer {
    public static void main(String[] argv) throws Exception {
        if (argv.length == 0 || !(argv[0].equals("esme") || argv[0].equals("upstream"))) {
            System.err.println("usage: CloudhopperPeer esme|upstream --option value ...");
            System.exit(2);
        }
        Map<String, String> opts = new HashMap<>();
        for (int i = 1; i < argv.length; i += 2) {
            if (!argv[i].startsWith("--") || i + 1 == argv.length) {
                System.err.println("bad argument: " + argv[i]);
                System.exit(2);
            }
            opts.put(argv[i].substring(2), argv[i + 1]);
        }
        if (argv[0].equals("esme")) {
            Esme esme;
            try {
                esme = new Esme(opts);
            } catch (RuntimeException e) { // a bad number or mode: no session threads yet
                System.err.println("bad arguments: " + e.getMessage());
                System.exit(2);
                return;
            }
            System.exit(esme.run());
        } else {
            try {
                new Upstream(opts).run();
            } catch (Exception e) { // e.g. the port is taken; netty's threads would keep us up
                System.err.println("upstream: " + e);
                System.exit(1);
            }
        }
    }

    /** One protocol line on stdout, flushed at once (the harness reads it live). */
    static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static String required(Map<String, String> opts, String name) {
        String v = opts.get(name);
        if (v == null) {
            System.err.println("missing --" + name);
            System.exit(2);
        }
        return v;
    }

    /**
     * The text of a short_message (or message_payload): data_coding 0 is the GSM default
     * alphabet, unpacked; 8 is UCS2; anything else is read as Latin-1. A UDH is skipped.
     */
    static String text(BaseSm sm) {
        byte[] bytes = sm.getShortMessage();
        Tlv payload = sm.getOptionalParameter(SmppConstants.TAG_MESSAGE_PAYLOAD);
        if ((bytes == null || bytes.length == 0) && payload != null) {
            bytes = payload.getValue();
        }
        if (bytes == null) {
            return "";
        }
        if ((sm.getEsmClass() & SmppConstants.ESM_CLASS_UDHI_MASK) != 0) {
            bytes = GsmUtil.getShortMessageUserData(bytes);
        }
        switch (sm.getDataCoding()) {
            case SmppConstants.DATA_CODING_DEFAULT:
                return CharsetUtil.decode(bytes, CharsetUtil.CHARSET_GSM);
            case SmppConstants.DATA_CODING_UCS2:
                return CharsetUtil.decode(bytes, CharsetUtil.CHARSET_UCS_2);
            default:
                return new String(bytes, StandardCharsets.ISO_8859_1);
        }
    }

    static String hex(byte[] bytes) {
        return bytes == null ? "(none)" : HexFormat.of().formatHex(bytes);
    }

    private CloudhopperPeer() {}
}
