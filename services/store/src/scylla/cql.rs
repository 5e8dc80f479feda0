//! The CQL text of every statement the store prepares, for one keyspace, and the column
//! lists it is built from.

pub(super) const MESSAGE_COLUMNS: [&str; 25] = [
    "message_id",
    "dest_index",
    "system_id",
    "source_ton",
    "source_npi",
    "source_addr",
    "dest_ton",
    "dest_npi",
    "dest_addr",
    "service_type",
    "registered_delivery",
    "data_coding",
    "esm_class",
    "payload",
    "state",
    "error_code",
    "attempts",
    "submitted_at",
    "schedule_at",
    "expire_at",
    "final_at",
    "event",
    "first_attempt_at",
    "connector",
    "route",
];
const SESSION_COLUMNS: [&str; 6] =
    ["system_id", "session_id", "edge_id", "endpoint", "bind", "bound_at"];
const PENDING_COLUMNS: [&str; 6] = ["system_id", "id", "kind", "message_id", "pdu", "created_at"];

/// The columns a transition may set, each bound to a marker of its own name.
pub(super) const UPDATABLE_COLUMNS: [&str; 12] = [
    "state",
    "error_code",
    "attempts",
    "final_at",
    "payload",
    "data_coding",
    "registered_delivery",
    "schedule_at",
    "expire_at",
    "event",
    "first_attempt_at",
    "connector",
];

/// The CQL of every statement the store prepares, for one keyspace.
#[derive(Debug, Clone)]
pub(super) struct Cql {
    pub(super) insert_message: String,
    pub(super) select_message: String,
    pub(super) select_message_ttl: String,
    pub(super) select_message_row: String,
    pub(super) update_message: String,
    pub(super) upsert_session: String,
    pub(super) delete_session: String,
    pub(super) select_sessions: String,
    pub(super) upsert_pending: String,
    pub(super) select_pending: String,
    pub(super) select_pending_after: String,
    pub(super) delete_pending: String,
    pub(super) select_migrations: String,
    pub(super) insert_migration: String,
    pub(super) upsert_upstream_link: String,
    pub(super) park_upstream_receipt: String,
    pub(super) select_upstream: String,
    pub(super) insert_slot: String,
    pub(super) refresh_slot: String,
    pub(super) delete_slot: String,
    pub(super) select_quota: String,
    pub(super) insert_quota: String,
    pub(super) update_quota: String,
}

impl Cql {
    pub(super) fn new(ks: &str) -> Self {
        let list = |cols: &[&str]| cols.join(", ");
        let marks = |n: usize| vec!["?"; n].join(", ");
        let messages = list(&MESSAGE_COLUMNS);
        let sessions = list(&SESSION_COLUMNS);
        let pending = list(&PENDING_COLUMNS);
        // Named markers: `state` is both set and tested, and `?` would name both "state".
        let set = UPDATABLE_COLUMNS.map(|c| format!("{c} = :{c}")).join(", ");
        Self {
            insert_message: format!(
                "INSERT INTO {ks}.messages ({messages}) VALUES ({}) IF NOT EXISTS USING TTL ?",
                marks(MESSAGE_COLUMNS.len())
            ),
            select_message: format!("SELECT {messages} FROM {ks}.messages WHERE message_id = ?"),
            // system_id is written once, by the insert: its TTL is the row's.
            select_message_ttl: format!(
                "SELECT system_id, TTL(system_id) AS remaining_ttl FROM {ks}.messages \
                 WHERE message_id = ? AND dest_index = ?"
            ),
            select_message_row: format!(
                "SELECT {messages} FROM {ks}.messages WHERE message_id = ? AND dest_index = ?"
            ),
            update_message: format!(
                "UPDATE {ks}.messages USING TTL :ttl SET {set} \
                 WHERE message_id = :message_id AND dest_index = :dest_index \
                 IF state = :expected_state"
            ),
            upsert_session: format!(
                "INSERT INTO {ks}.sessions ({sessions}) VALUES ({}) USING TTL ?",
                marks(SESSION_COLUMNS.len())
            ),
            delete_session: format!(
                "DELETE FROM {ks}.sessions WHERE system_id = ? AND session_id = ?"
            ),
            select_sessions: format!("SELECT {sessions} FROM {ks}.sessions WHERE system_id = ?"),
            upsert_pending: format!(
                "INSERT INTO {ks}.pending_notifications ({pending}) VALUES ({}) USING TTL ?",
                marks(PENDING_COLUMNS.len())
            ),
            select_pending: format!(
                "SELECT {pending} FROM {ks}.pending_notifications WHERE system_id = ? LIMIT ?"
            ),
            select_pending_after: format!(
                "SELECT {pending} FROM {ks}.pending_notifications \
                 WHERE system_id = ? AND id > ? LIMIT ?"
            ),
            delete_pending: format!(
                "DELETE FROM {ks}.pending_notifications WHERE system_id = ? AND id = ? IF EXISTS"
            ),
            select_migrations: format!(
                "SELECT version FROM {ks}.schema_migrations WHERE component = ?"
            ),
            insert_migration: format!(
                "INSERT INTO {ks}.schema_migrations (component, version, name, applied_at) \
                 VALUES (?, ?, ?, ?) IF NOT EXISTS"
            ),
            // Upserts of their own columns: the link and the parked receipt of one id are
            // written apart and merge in the row.
            upsert_upstream_link: format!(
                "INSERT INTO {ks}.upstream_ids (connector, upstream_id, message_id, dest_index) \
                 VALUES (?, ?, ?, ?) USING TTL ?"
            ),
            park_upstream_receipt: format!(
                "INSERT INTO {ks}.upstream_ids (connector, upstream_id, parked_receipt) \
                 VALUES (?, ?, ?) USING TTL ?"
            ),
            select_upstream: format!(
                "SELECT message_id, dest_index, parked_receipt FROM {ks}.upstream_ids \
                 WHERE connector = ? AND upstream_id = ?"
            ),
            insert_slot: format!(
                "INSERT INTO {ks}.bind_slots (pool, slot, holder) VALUES (?, ?, ?) \
                 IF NOT EXISTS USING TTL ?"
            ),
            // Named markers: `holder` is both set and tested.
            refresh_slot: format!(
                "UPDATE {ks}.bind_slots USING TTL :ttl SET holder = :holder \
                 WHERE pool = :pool AND slot = :slot IF holder = :expected_holder"
            ),
            delete_slot: format!(
                "DELETE FROM {ks}.bind_slots WHERE pool = ? AND slot = ? IF holder = ?"
            ),
            select_quota: format!(
                "SELECT used FROM {ks}.quota_usage WHERE system_id = ? AND period = ?"
            ),
            insert_quota: format!(
                "INSERT INTO {ks}.quota_usage (system_id, period, used) VALUES (?, ?, ?) \
                 IF NOT EXISTS USING TTL ?"
            ),
            update_quota: format!(
                "UPDATE {ks}.quota_usage USING TTL :ttl SET used = :used \
                 WHERE system_id = :system_id AND period = :period IF used = :expected"
            ),
        }
    }

    /// Every data-path statement, named (migration bookkeeping is prepared apart).
    #[cfg(test)]
    pub(super) fn data_path(&self) -> [(&'static str, &str); 21] {
        [
            ("insert_message", &self.insert_message),
            ("select_message", &self.select_message),
            ("select_message_ttl", &self.select_message_ttl),
            ("select_message_row", &self.select_message_row),
            ("update_message", &self.update_message),
            ("upsert_session", &self.upsert_session),
            ("delete_session", &self.delete_session),
            ("select_sessions", &self.select_sessions),
            ("upsert_pending", &self.upsert_pending),
            ("select_pending", &self.select_pending),
            ("select_pending_after", &self.select_pending_after),
            ("delete_pending", &self.delete_pending),
            ("upsert_upstream_link", &self.upsert_upstream_link),
            ("park_upstream_receipt", &self.park_upstream_receipt),
            ("select_upstream", &self.select_upstream),
            ("insert_slot", &self.insert_slot),
            ("refresh_slot", &self.refresh_slot),
            ("delete_slot", &self.delete_slot),
            ("select_quota", &self.select_quota),
            ("insert_quota", &self.insert_quota),
            ("update_quota", &self.update_quota),
        ]
    }
}
