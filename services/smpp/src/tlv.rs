//! Optional parameters (TLVs): every tag of SMPP 3.4 §5.3.2 and 5.0 §4.8.4, typed
//! by what it carries. A tag this table does not know (the 0x1400-0x3FFF vendor range
//! included) is kept as raw bytes, so the PDU re-encodes byte for byte.

use bytes::{BufMut, Bytes, BytesMut};

use crate::MessageState;

/// A TLV tag. A newtype so that any 16-bit tag can be named, known or not.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TlvTag(pub u16);

impl TlvTag {
    /// The 0x1400-0x3FFF range the spec reserves for SMSC vendors.
    pub const fn is_vendor_specific(self) -> bool {
        matches!(self.0, 0x1400..=0x3FFF)
    }
}

impl std::fmt::Debug for TlvTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}(0x{:04X})", self.0),
            None => write!(f, "TlvTag(0x{:04X})", self.0),
        }
    }
}

/// A C-Octet String TLV value (receipted_message_id, additional_status_info_text, ...).
/// It keeps the octets as received, terminator included: some peers omit the NUL and
/// the value must still re-encode unchanged. `value()` gives the text without it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TlvString(Bytes);

impl TlvString {
    /// Builds a value from text, adding the NUL terminator.
    pub fn new(text: &[u8]) -> Self {
        let mut b = BytesMut::with_capacity(text.len() + 1);
        b.put_slice(text);
        b.put_u8(0);
        Self(b.freeze())
    }

    /// The text, without the terminator (and without anything after an embedded NUL).
    pub fn value(&self) -> &[u8] {
        match memchr::memchr(0, &self.0) {
            Some(end) => &self.0[..end],
            None => &self.0,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.value()).ok()
    }

    /// The octets on the wire.
    pub fn raw(&self) -> &Bytes {
        &self.0
    }
}

impl std::fmt::Debug for TlvString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0.escape_ascii().to_string())
    }
}

/// network_error_code: the network type (1 ANSI-136, 2 IS-95, 3 GSM, ...) and its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkErrorCode {
    pub network_type: u8,
    pub error_code: u16,
}

impl NetworkErrorCode {
    pub const GSM: u8 = 3;
}

/// its_session_info: the session number and the sequence octet (bit 0 = end of session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ItsSessionInfo {
    pub session_number: u8,
    pub sequence: u8,
}

/// How a TLV value turns into its type and back. The length was checked against the
/// tag's bounds before `decode` is called.
trait Value: Sized {
    fn decode(raw: &Bytes) -> Option<Self>;
    fn len(&self) -> usize;
    fn encode(&self, out: &mut BytesMut);
}

impl Value for u8 {
    fn decode(raw: &Bytes) -> Option<Self> {
        raw.first().copied()
    }
    fn len(&self) -> usize {
        1
    }
    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(*self);
    }
}

impl Value for u16 {
    fn decode(raw: &Bytes) -> Option<Self> {
        Some(u16::from_be_bytes(raw.get(..2)?.try_into().ok()?))
    }
    fn len(&self) -> usize {
        2
    }
    fn encode(&self, out: &mut BytesMut) {
        out.put_u16(*self);
    }
}

impl Value for u32 {
    fn decode(raw: &Bytes) -> Option<Self> {
        Some(u32::from_be_bytes(raw.get(..4)?.try_into().ok()?))
    }
    fn len(&self) -> usize {
        4
    }
    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(*self);
    }
}

impl Value for Bytes {
    fn decode(raw: &Bytes) -> Option<Self> {
        Some(raw.clone())
    }
    fn len(&self) -> usize {
        self.as_ref().len()
    }
    fn encode(&self, out: &mut BytesMut) {
        out.put_slice(self);
    }
}

impl Value for TlvString {
    fn decode(raw: &Bytes) -> Option<Self> {
        Some(Self(raw.clone()))
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.0);
    }
}

impl Value for MessageState {
    fn decode(raw: &Bytes) -> Option<Self> {
        raw.first().map(|&b| MessageState(b))
    }
    fn len(&self) -> usize {
        1
    }
    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.0);
    }
}

impl Value for NetworkErrorCode {
    fn decode(raw: &Bytes) -> Option<Self> {
        let [network_type, hi, lo] = raw.get(..3)?.try_into().ok()?;
        Some(Self { network_type, error_code: u16::from_be_bytes([hi, lo]) })
    }
    fn len(&self) -> usize {
        3
    }
    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.network_type);
        out.put_u16(self.error_code);
    }
}

impl Value for ItsSessionInfo {
    fn decode(raw: &Bytes) -> Option<Self> {
        let [session_number, sequence] = raw.get(..2)?.try_into().ok()?;
        Some(Self { session_number, sequence })
    }
    fn len(&self) -> usize {
        2
    }
    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.session_number);
        out.put_u8(self.sequence);
    }
}

/// Why a TLV could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlvError {
    /// The tag/length header or the value runs past the body: ESME_RINVOPTPARSTREAM.
    Stream,
    /// A known tag with a length outside the spec's bounds: ESME_RINVPARLEN.
    Length(TlvTag),
}

macro_rules! tlvs {
    ($($variant:ident / $konst:ident = $tag:literal, $name:literal, $ty:ty, $min:literal ..= $max:literal;)*) => {
        impl TlvTag {
            $(#[doc = $name] pub const $konst: Self = Self($tag);)*

            /// The spec's name (`message_payload`), or `None` for an unknown tag.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($tag => Some($name),)*
                    _ => None,
                }
            }

            /// Every tag the catalogue knows.
            pub const ALL: &'static [Self] = &[$(Self::$konst),*];

            /// The spec's bounds on the value's length, for a known tag.
            pub const fn length_bounds(self) -> Option<(usize, usize)> {
                match self.0 {
                    $($tag => Some(($min, $max)),)*
                    _ => None,
                }
            }
        }

        /// One optional parameter.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Tlv {
            $(#[doc = $name] $variant($ty),)*
            /// A tag this catalogue does not know, kept as received.
            Other { tag: TlvTag, value: Bytes },
        }

        impl Tlv {
            pub fn tag(&self) -> TlvTag {
                match self {
                    $(Self::$variant(_) => TlvTag::$konst,)*
                    Self::Other { tag, .. } => *tag,
                }
            }

            fn value_len(&self) -> usize {
                match self {
                    $(Self::$variant(v) => Value::len(v),)*
                    Self::Other { value, .. } => value.len(),
                }
            }

            fn encode_value(&self, out: &mut BytesMut) {
                match self {
                    $(Self::$variant(v) => Value::encode(v, out),)*
                    Self::Other { value, .. } => out.put_slice(value),
                }
            }

            fn decode_value(tag: TlvTag, raw: Bytes) -> Result<Self, TlvError> {
                match tag.0 {
                    $($tag => {
                        if !($min..=$max).contains(&raw.len()) {
                            return Err(TlvError::Length(tag));
                        }
                        <$ty as Value>::decode(&raw).map(Self::$variant).ok_or(TlvError::Length(tag))
                    })*
                    _ => Ok(Self::Other { tag, value: raw }),
                }
            }
        }
    };
}

tlvs! {
    DestAddrSubunit / DEST_ADDR_SUBUNIT = 0x0005, "dest_addr_subunit", u8, 1..=1;
    DestNetworkType / DEST_NETWORK_TYPE = 0x0006, "dest_network_type", u8, 1..=1;
    DestBearerType / DEST_BEARER_TYPE = 0x0007, "dest_bearer_type", u8, 1..=1;
    DestTelematicsId / DEST_TELEMATICS_ID = 0x0008, "dest_telematics_id", u16, 2..=2;
    SourceAddrSubunit / SOURCE_ADDR_SUBUNIT = 0x000D, "source_addr_subunit", u8, 1..=1;
    SourceNetworkType / SOURCE_NETWORK_TYPE = 0x000E, "source_network_type", u8, 1..=1;
    SourceBearerType / SOURCE_BEARER_TYPE = 0x000F, "source_bearer_type", u8, 1..=1;
    // One octet in 3.4's table, two in 5.0's: both are accepted and kept as sent.
    SourceTelematicsId / SOURCE_TELEMATICS_ID = 0x0010, "source_telematics_id", Bytes, 1..=2;
    QosTimeToLive / QOS_TIME_TO_LIVE = 0x0017, "qos_time_to_live", u32, 4..=4;
    PayloadType / PAYLOAD_TYPE = 0x0019, "payload_type", u8, 1..=1;
    AdditionalStatusInfoText / ADDITIONAL_STATUS_INFO_TEXT = 0x001D, "additional_status_info_text", TlvString, 1..=256;
    ReceiptedMessageId / RECEIPTED_MESSAGE_ID = 0x001E, "receipted_message_id", TlvString, 1..=65;
    MsMsgWaitFacilities / MS_MSG_WAIT_FACILITIES = 0x0030, "ms_msg_wait_facilities", u8, 1..=1;
    PrivacyIndicator / PRIVACY_INDICATOR = 0x0201, "privacy_indicator", u8, 1..=1;
    SourceSubaddress / SOURCE_SUBADDRESS = 0x0202, "source_subaddress", Bytes, 2..=23;
    DestSubaddress / DEST_SUBADDRESS = 0x0203, "dest_subaddress", Bytes, 2..=23;
    UserMessageReference / USER_MESSAGE_REFERENCE = 0x0204, "user_message_reference", u16, 2..=2;
    UserResponseCode / USER_RESPONSE_CODE = 0x0205, "user_response_code", u8, 1..=1;
    SourcePort / SOURCE_PORT = 0x020A, "source_port", u16, 2..=2;
    DestinationPort / DESTINATION_PORT = 0x020B, "destination_port", u16, 2..=2;
    SarMsgRefNum / SAR_MSG_REF_NUM = 0x020C, "sar_msg_ref_num", u16, 2..=2;
    LanguageIndicator / LANGUAGE_INDICATOR = 0x020D, "language_indicator", u8, 1..=1;
    SarTotalSegments / SAR_TOTAL_SEGMENTS = 0x020E, "sar_total_segments", u8, 1..=1;
    SarSegmentSeqnum / SAR_SEGMENT_SEQNUM = 0x020F, "sar_segment_seqnum", u8, 1..=1;
    ScInterfaceVersion / SC_INTERFACE_VERSION = 0x0210, "sc_interface_version", u8, 1..=1;
    CallbackNumPresInd / CALLBACK_NUM_PRES_IND = 0x0302, "callback_num_pres_ind", u8, 1..=1;
    CallbackNumAtag / CALLBACK_NUM_ATAG = 0x0303, "callback_num_atag", Bytes, 0..=65;
    NumberOfMessages / NUMBER_OF_MESSAGES = 0x0304, "number_of_messages", u8, 1..=1;
    CallbackNum / CALLBACK_NUM = 0x0381, "callback_num", Bytes, 4..=19;
    DpfResult / DPF_RESULT = 0x0420, "dpf_result", u8, 1..=1;
    SetDpf / SET_DPF = 0x0421, "set_dpf", u8, 1..=1;
    MsAvailabilityStatus / MS_AVAILABILITY_STATUS = 0x0422, "ms_availability_status", u8, 1..=1;
    NetworkErrorCode / NETWORK_ERROR_CODE = 0x0423, "network_error_code", NetworkErrorCode, 3..=3;
    MessagePayload / MESSAGE_PAYLOAD = 0x0424, "message_payload", Bytes, 0..=65535;
    DeliveryFailureReason / DELIVERY_FAILURE_REASON = 0x0425, "delivery_failure_reason", u8, 1..=1;
    MoreMessagesToSend / MORE_MESSAGES_TO_SEND = 0x0426, "more_messages_to_send", u8, 1..=1;
    MessageState / MESSAGE_STATE = 0x0427, "message_state", MessageState, 1..=1;
    CongestionState / CONGESTION_STATE = 0x0428, "congestion_state", u8, 1..=1;
    UssdServiceOp / USSD_SERVICE_OP = 0x0501, "ussd_service_op", u8, 1..=1;
    BroadcastChannelIndicator / BROADCAST_CHANNEL_INDICATOR = 0x0600, "broadcast_channel_indicator", u8, 1..=1;
    BroadcastContentType / BROADCAST_CONTENT_TYPE = 0x0601, "broadcast_content_type", Bytes, 3..=3;
    BroadcastContentTypeInfo / BROADCAST_CONTENT_TYPE_INFO = 0x0602, "broadcast_content_type_info", Bytes, 0..=255;
    BroadcastMessageClass / BROADCAST_MESSAGE_CLASS = 0x0603, "broadcast_message_class", u8, 1..=1;
    BroadcastRepNum / BROADCAST_REP_NUM = 0x0604, "broadcast_rep_num", u16, 2..=2;
    BroadcastFrequencyInterval / BROADCAST_FREQUENCY_INTERVAL = 0x0605, "broadcast_frequency_interval", Bytes, 3..=3;
    BroadcastAreaIdentifier / BROADCAST_AREA_IDENTIFIER = 0x0606, "broadcast_area_identifier", Bytes, 0..=100;
    BroadcastErrorStatus / BROADCAST_ERROR_STATUS = 0x0607, "broadcast_error_status", u32, 4..=4;
    BroadcastAreaSuccess / BROADCAST_AREA_SUCCESS = 0x0608, "broadcast_area_success", u8, 1..=1;
    BroadcastEndTime / BROADCAST_END_TIME = 0x0609, "broadcast_end_time", TlvString, 1..=17;
    BroadcastServiceGroup / BROADCAST_SERVICE_GROUP = 0x060A, "broadcast_service_group", Bytes, 0..=255;
    BillingIdentification / BILLING_IDENTIFICATION = 0x060B, "billing_identification", Bytes, 0..=1024;
    SourceNetworkId / SOURCE_NETWORK_ID = 0x060D, "source_network_id", TlvString, 1..=65;
    DestNetworkId / DEST_NETWORK_ID = 0x060E, "dest_network_id", TlvString, 1..=65;
    SourceNodeId / SOURCE_NODE_ID = 0x060F, "source_node_id", Bytes, 6..=6;
    DestNodeId / DEST_NODE_ID = 0x0610, "dest_node_id", Bytes, 6..=6;
    DestAddrNpResolution / DEST_ADDR_NP_RESOLUTION = 0x0611, "dest_addr_np_resolution", u8, 1..=1;
    DestAddrNpInformation / DEST_ADDR_NP_INFORMATION = 0x0612, "dest_addr_np_information", Bytes, 10..=10;
    DestAddrNpCountry / DEST_ADDR_NP_COUNTRY = 0x0613, "dest_addr_np_country", Bytes, 5..=5;
    DisplayTime / DISPLAY_TIME = 0x1201, "display_time", u8, 1..=1;
    SmsSignal / SMS_SIGNAL = 0x1203, "sms_signal", u16, 2..=2;
    // One octet in 3.4; 5.0 adds optional period fields (up to 4 octets).
    MsValidity / MS_VALIDITY = 0x1204, "ms_validity", Bytes, 1..=4;
    // Empty in 3.4; 5.0 allows one octet of priority.
    AlertOnMessageDelivery / ALERT_ON_MESSAGE_DELIVERY = 0x130C, "alert_on_message_delivery", Bytes, 0..=1;
    ItsReplyType / ITS_REPLY_TYPE = 0x1380, "its_reply_type", u8, 1..=1;
    ItsSessionInfo / ITS_SESSION_INFO = 0x1383, "its_session_info", ItsSessionInfo, 2..=2;
}

impl Tlv {
    /// Octets on the wire: tag, length and value.
    pub fn encoded_len(&self) -> usize {
        4 + self.value_len()
    }

    /// Writes the TLV. A value longer than 65535 octets cannot be represented; the
    /// caller (`Pdu::encode`) rejects such a PDU before writing anything.
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.tag().0);
        out.put_u16(self.value_len() as u16);
        self.encode_value(out);
    }

    pub(crate) fn fits(&self) -> bool {
        self.value_len() <= usize::from(u16::MAX)
    }
}

/// The TLVs of a PDU, in the order they came (or will go) on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Tlvs(Vec<Tlv>);

impl Tlvs {
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    pub fn push(&mut self, tlv: Tlv) {
        self.0.push(tlv);
    }

    /// Replaces the first TLV with the same tag, or appends.
    pub fn set(&mut self, tlv: Tlv) {
        let tag = tlv.tag();
        match self.0.iter_mut().find(|t| t.tag() == tag) {
            Some(slot) => *slot = tlv,
            None => self.0.push(tlv),
        }
    }

    pub fn remove(&mut self, tag: TlvTag) {
        self.0.retain(|t| t.tag() != tag);
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Tlv> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, tag: TlvTag) -> Option<&Tlv> {
        self.0.iter().find(|t| t.tag() == tag)
    }

    /// The first tag that occurs more than once (the spec allows each once per PDU).
    pub fn duplicate(&self) -> Option<TlvTag> {
        self.0
            .iter()
            .enumerate()
            .find(|(i, t)| self.0[..*i].iter().any(|p| p.tag() == t.tag()))
            .map(|(_, t)| t.tag())
    }

    pub fn message_payload(&self) -> Option<&Bytes> {
        self.0.iter().find_map(|t| match t {
            Tlv::MessagePayload(v) => Some(v),
            _ => None,
        })
    }

    pub fn receipted_message_id(&self) -> Option<&TlvString> {
        self.0.iter().find_map(|t| match t {
            Tlv::ReceiptedMessageId(v) => Some(v),
            _ => None,
        })
    }

    pub fn message_state(&self) -> Option<MessageState> {
        self.0.iter().find_map(|t| match t {
            Tlv::MessageState(v) => Some(*v),
            _ => None,
        })
    }

    pub fn network_error_code(&self) -> Option<NetworkErrorCode> {
        self.0.iter().find_map(|t| match t {
            Tlv::NetworkErrorCode(v) => Some(*v),
            _ => None,
        })
    }

    pub fn sc_interface_version(&self) -> Option<u8> {
        self.0.iter().find_map(|t| match t {
            Tlv::ScInterfaceVersion(v) => Some(*v),
            _ => None,
        })
    }

    pub fn user_message_reference(&self) -> Option<u16> {
        self.0.iter().find_map(|t| match t {
            Tlv::UserMessageReference(v) => Some(*v),
            _ => None,
        })
    }

    /// The SAR triple, when all three TLVs are present.
    pub fn sar(&self) -> Option<crate::concat::SarInfo> {
        let (mut r, mut total, mut seq) = (None, None, None);
        for t in &self.0 {
            match t {
                Tlv::SarMsgRefNum(v) => r = Some(*v),
                Tlv::SarTotalSegments(v) => total = Some(*v),
                Tlv::SarSegmentSeqnum(v) => seq = Some(*v),
                _ => {}
            }
        }
        Some(crate::concat::SarInfo {
            msg_ref_num: r?,
            total_segments: total?,
            segment_seqnum: seq?,
        })
    }

    /// Sets the three SAR TLVs.
    pub fn set_sar(&mut self, sar: crate::concat::SarInfo) {
        self.set(Tlv::SarMsgRefNum(sar.msg_ref_num));
        self.set(Tlv::SarTotalSegments(sar.total_segments));
        self.set(Tlv::SarSegmentSeqnum(sar.segment_seqnum));
    }

    pub(crate) fn encoded_len(&self) -> usize {
        self.0.iter().map(Tlv::encoded_len).sum()
    }

    /// The TLVs as they go on the wire (to carry them inside another message).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.to_vec()
    }

    /// Decodes TLVs carried by [`Tlvs::to_vec`]; `None` when malformed.
    pub fn from_bytes(bytes: Bytes) -> Option<Self> {
        Self::decode(bytes).ok()
    }

    pub(crate) fn fits(&self) -> bool {
        self.0.iter().all(Tlv::fits)
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        for t in &self.0 {
            t.encode(out);
        }
    }

    /// Decodes TLVs until `body` is exhausted.
    pub(crate) fn decode(mut body: Bytes) -> Result<Self, TlvError> {
        let mut tlvs = Vec::new();
        while !body.is_empty() {
            let Some(&[t0, t1, l0, l1]) = body.get(..4) else {
                return Err(TlvError::Stream);
            };
            let len = usize::from(u16::from_be_bytes([l0, l1]));
            if body.len() < 4 + len {
                return Err(TlvError::Stream);
            }
            let value = body.slice(4..4 + len);
            body = body.slice(4 + len..);
            tlvs.push(Tlv::decode_value(TlvTag(u16::from_be_bytes([t0, t1])), value)?);
        }
        Ok(Self(tlvs))
    }
}

impl From<Vec<Tlv>> for Tlvs {
    fn from(v: Vec<Tlv>) -> Self {
        Self(v)
    }
}

impl<'a> IntoIterator for &'a Tlvs {
    type Item = &'a Tlv;
    type IntoIter = std::slice::Iter<'a, Tlv>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(bytes: &[u8]) -> Tlvs {
        let tlvs = Tlvs::decode(Bytes::copy_from_slice(bytes)).expect("decodes");
        let mut out = BytesMut::new();
        tlvs.encode(&mut out);
        assert_eq!(&out[..], bytes, "re-encodes byte-identical");
        assert_eq!(tlvs.encoded_len(), bytes.len());
        tlvs
    }

    #[test]
    fn typed_tags() {
        let t = roundtrip(&[
            0x04, 0x27, 0, 1, 2, // message_state DELIVERED
            0x04, 0x23, 0, 3, 3, 0, 1, // network_error_code GSM 1
            0x00, 0x1E, 0, 4, b'a', b'b', b'c', 0, // receipted_message_id
            0x02, 0x0C, 0, 2, 0x12, 0x34, // sar_msg_ref_num
            0x02, 0x0E, 0, 1, 3, 0x02, 0x0F, 0, 1, 1,
        ]);
        assert_eq!(t.message_state(), Some(MessageState::DELIVERED));
        assert_eq!(
            t.network_error_code(),
            Some(NetworkErrorCode { network_type: 3, error_code: 1 })
        );
        assert_eq!(t.receipted_message_id().map(TlvString::value), Some(&b"abc"[..]));
        let sar = t.sar().expect("sar");
        assert_eq!((sar.msg_ref_num, sar.total_segments, sar.segment_seqnum), (0x1234, 3, 1));
    }

    #[test]
    fn unknown_and_vendor_tags_are_kept_raw() {
        let t = roundtrip(&[0x14, 0x01, 0, 3, 9, 8, 7, 0x7F, 0xFF, 0, 0]);
        assert_eq!(t.len(), 2);
        assert!(
            matches!(t.iter().next(), Some(Tlv::Other { tag, .. }) if tag.is_vendor_specific())
        );
    }

    #[test]
    fn receipted_message_id_without_nul_survives() {
        let t = roundtrip(&[0x00, 0x1E, 0, 3, b'x', b'y', b'z']);
        assert_eq!(t.receipted_message_id().map(TlvString::value), Some(&b"xyz"[..]));
    }

    #[test]
    fn malformed_streams() {
        let dec = |b: &[u8]| Tlvs::decode(Bytes::copy_from_slice(b));
        assert_eq!(dec(&[0x02, 0x0C, 0]), Err(TlvError::Stream));
        assert_eq!(dec(&[0x02, 0x0C, 0, 5, 1]), Err(TlvError::Stream));
        assert_eq!(dec(&[0x02, 0x0C, 0, 1, 1]), Err(TlvError::Length(TlvTag::SAR_MSG_REF_NUM)));
        assert_eq!(dec(&[0x04, 0x27, 0, 0]), Err(TlvError::Length(TlvTag::MESSAGE_STATE)));
    }

    #[test]
    fn names() {
        assert_eq!(TlvTag(0x0424).name(), Some("message_payload"));
        assert_eq!(TlvTag(0x1383).name(), Some("its_session_info"));
        assert_eq!(TlvTag(0x1400).name(), None);
        for w in TlvTag::ALL.windows(2) {
            assert!(w[0] < w[1]);
        }
    }

    #[test]
    fn duplicates_are_reported() {
        let t = roundtrip(&[0x02, 0x04, 0, 2, 0, 1, 0x02, 0x04, 0, 2, 0, 2]);
        assert_eq!(t.duplicate(), Some(TlvTag::USER_MESSAGE_REFERENCE));
    }
}
