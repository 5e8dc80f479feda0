//! Keeps an [`AccountDirectory`] equal to the namespace's usable `SmppAccount`s, and
//! reports in each resource's status whether it is used and how many sessions this pod
//! holds for it.
//!
//! Two reflectors (SmppAccounts, Secrets) feed one loop. After any change the whole set
//! is resolved again ([`crate::resolve`]) and swapped into the directory at once, as a
//! file reload does; the directory is only touched once both lists are complete, so a
//! pod never starts with half the accounts. An API outage keeps the last accounts.
//!
//! Status is written with server-side apply on the status subresource, field manager
//! `smsc-edge/<pod>`, at most every `status_interval` and only where what the resource
//! shows differs from what this pod would write (its session count, the `Ready`
//! condition). Each pod owns its entry of `status.pods` (a list-map keyed by `pod`):
//! an entry goes when its pod stops, or, for a pod that died, once it is [`STALE`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource as _, ResourceExt as _};
use smsc_accounts::AccountDirectory;
use smsc_runtime::admin::ReadyCondition;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::crd::{Condition, PodSessions, SmppAccount, SmppAccountStatus};
use crate::resolve::{self, Problem};

/// A pod rewrites its `status.pods` entry at least this often while it holds sessions.
pub const REFRESH: Duration = Duration::from_secs(5 * 60);
/// An entry not rewritten for this long is from a pod that is gone: it is left out of
/// `status.sessions` and removed.
pub const STALE: Duration = Duration::from_secs(20 * 60);
/// Status writes of one pod per `status_interval`; the rest wait for the next one.
pub const MAX_WRITES_PER_INTERVAL: usize = 50;
/// How long a stopping pod tries to remove its entries.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Sessions this pod holds, by system_id (the edge's registry).
pub trait SessionCounter: Send + Sync + 'static {
    fn sessions(&self, system_id: &str) -> usize;
}

impl<F: Fn(&str) -> usize + Send + Sync + 'static> SessionCounter for F {
    fn sessions(&self, system_id: &str) -> usize {
        self(system_id)
    }
}

/// What [`run`] watches and how.
#[derive(Debug, Clone)]
pub struct Settings {
    pub namespace: String,
    /// Label selector for the Secrets watched; `None`: all of the namespace.
    pub secret_selector: Option<String>,
    /// `store.message_ttl`: no account may keep messages longer.
    pub max_validity_cap: Duration,
    /// Status reporting (edge pods); `None` for pods that only read accounts.
    pub status: Option<StatusSettings>,
}

#[derive(Clone)]
pub struct StatusSettings {
    /// This pod's name: its `status.pods` entry and field manager.
    pub pod: String,
    pub interval: Duration,
    pub sessions: Arc<dyn SessionCounter>,
}

impl std::fmt::Debug for StatusSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusSettings")
            .field("pod", &self.pod)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Watches until `shutdown`, keeping `directory` up to date; sets `loaded` once the
/// first complete set is in.
pub async fn run(
    client: Client,
    settings: Settings,
    directory: Arc<AccountDirectory>,
    loaded: Option<ReadyCondition>,
    shutdown: CancellationToken,
) {
    let ns = settings.namespace.clone();
    let accounts_api: Api<SmppAccount> = Api::namespaced(client.clone(), &ns);
    let secrets_api: Api<Secret> = Api::namespaced(client, &ns);
    let (account_store, account_writer) = reflector::store::<SmppAccount>();
    let (secret_store, secret_writer) = reflector::store::<Secret>();
    let mut secret_config = watcher::Config::default();
    if let Some(selector) = &settings.secret_selector {
        secret_config = secret_config.labels(selector);
    }
    let account_events = watcher(accounts_api.clone(), watcher::Config::default())
        .modify(|a: &mut SmppAccount| a.metadata.managed_fields = None)
        .default_backoff()
        .reflect(account_writer)
        .map(|e| (Kind::Accounts, e.map(|e| Settle::of(&e))))
        .boxed();
    let secret_events = watcher(secrets_api, secret_config)
        .modify(resolve::slim_secret)
        .default_backoff()
        .reflect(secret_writer)
        .map(|e| (Kind::Secrets, e.map(|e| Settle::of(&e))))
        .boxed();
    let mut events = futures::stream::select(account_events, secret_events);

    let mut state = State {
        namespace: ns,
        accounts: account_store,
        secrets: secret_store,
        max_validity_cap: settings.max_validity_cap,
        listed: [false, false],
        fingerprint: None,
        outcomes: BTreeMap::new(),
        directory,
        loaded,
    };
    let mut status = settings.status.map(|s| StatusWriter::new(accounts_api, s));
    let period = status.as_ref().map_or(Duration::from_secs(3600), |s| s.settings.interval);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let mut changed = false;
        tokio::select! {
            () = shutdown.cancelled() => break,
            event = events.next() => {
                let Some(first) = event else { break };
                changed |= state.note(first);
                // Whatever else is already there is handled by the same resolve.
                while let Some(Some(next)) = events.next().now_or_never() {
                    changed |= state.note(next);
                }
            }
            _ = tick.tick() => {
                if let Some(status) = status.as_mut()
                    && state.ready()
                {
                    status.write(&state.accounts.state(), &state.outcomes, false).await;
                }
            }
        }
        if changed && state.ready() {
            state.resolve();
        }
    }
    if let Some(status) = status.as_mut()
        && state.ready()
    {
        let resources = state.accounts.state();
        let cleanup = status.write(&resources, &state.outcomes, true);
        if tokio::time::timeout(CLEANUP_TIMEOUT, cleanup).await.is_err() {
            debug!("status entries not all removed at shutdown; they go stale");
        }
    }
    debug!("SmppAccount watcher stopped");
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Accounts,
    Secrets,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Accounts => "SmppAccount",
            Self::Secrets => "Secret",
        }
    }
}

/// What a watcher event means for the account set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// A list is complete (first time or after a re-list).
    Listed,
    /// An object changed or went.
    Changed,
    /// Part of a re-list: the store swaps at `Listed`.
    Partial,
}

impl Settle {
    fn of<K>(e: &watcher::Event<K>) -> Self {
        match e {
            watcher::Event::InitDone => Self::Listed,
            watcher::Event::Apply(_) | watcher::Event::Delete(_) => Self::Changed,
            watcher::Event::Init | watcher::Event::InitApply(_) => Self::Partial,
        }
    }
}

/// A resource as a resolve saw it: its name, its version, and the versions of the
/// Secrets it reads (password, then webhook: [`resolve::secret_names`]).
type Seen = (String, Option<String>, Vec<Option<String>>);

struct State {
    namespace: String,
    accounts: Store<SmppAccount>,
    secrets: Store<Secret>,
    max_validity_cap: Duration,
    /// Whether each list (accounts, secrets) has been complete once.
    listed: [bool; 2],
    /// What the last resolve saw.
    fingerprint: Option<Vec<Seen>>,
    outcomes: BTreeMap<String, Result<(), Problem>>,
    directory: Arc<AccountDirectory>,
    loaded: Option<ReadyCondition>,
}

impl State {
    /// Records one watcher item; true when the set may have changed.
    fn note(&mut self, (kind, item): (Kind, Result<Settle, watcher::Error>)) -> bool {
        match item {
            Ok(Settle::Listed) => {
                self.listed[kind as usize] = true;
                true
            }
            Ok(Settle::Changed) => true,
            Ok(Settle::Partial) => false,
            Err(e) => {
                // The backoff retries; the accounts loaded so far stay.
                warn!(resource = kind.name(), namespace = %self.namespace, error = %e, "watch failed; retrying");
                false
            }
        }
    }

    fn ready(&self) -> bool {
        self.listed.iter().all(|l| *l)
    }

    fn secret(&self, name: &str) -> Option<Arc<Secret>> {
        self.secrets.get(&ObjectRef::new(name).within(&self.namespace))
    }

    /// Resolves every resource again and, if anything it depends on changed, swaps the
    /// accounts in and logs what changed.
    fn resolve(&mut self) {
        let resources = self.accounts.state();
        let mut fingerprint: Vec<_> = resources
            .iter()
            .map(|r| {
                let secrets = resolve::secret_names(&r.spec)
                    .map(|name| self.secret(name).and_then(|s| s.resource_version()))
                    .collect();
                (r.name_any(), r.resource_version(), secrets)
            })
            .collect();
        fingerprint.sort();
        if self.fingerprint.as_ref() == Some(&fingerprint) {
            return;
        }
        let resolved =
            resolve::resolve(&resources, |name| self.secret(name), self.max_validity_cap);
        for (name, outcome) in &resolved.outcomes {
            if self.outcomes.get(name) == Some(outcome) {
                continue;
            }
            match outcome {
                Err(p) => warn!(
                    resource = %name,
                    namespace = %self.namespace,
                    reason = p.reason(),
                    problem = %p,
                    "SmppAccount not used"
                ),
                Ok(()) => debug!(resource = %name, "SmppAccount accepted"),
            }
        }
        let rejected = resolved.outcomes.values().filter(|o| o.is_err()).count();
        let count = resolved.accounts.len();
        self.directory.replace(resolved.accounts);
        info!(namespace = %self.namespace, count, rejected, "accounts loaded from SmppAccount resources");
        self.outcomes = resolved.outcomes;
        self.fingerprint = Some(fingerprint);
        if let Some(loaded) = &self.loaded {
            loaded.set(true);
        }
    }
}

/// Writes this pod's view of each resource's status.
struct StatusWriter {
    api: Api<SmppAccount>,
    settings: StatusSettings,
    /// Where the next interval's writes start, so none waits forever behind the cap.
    cursor: usize,
    /// When a failed write was last logged at WARN (once per [`REFRESH`]).
    warned: Option<tokio::time::Instant>,
}

impl StatusWriter {
    fn new(api: Api<SmppAccount>, settings: StatusSettings) -> Self {
        Self { api, settings, cursor: 0, warned: None }
    }

    fn manager(pod: &str) -> String {
        format!("smsc-edge/{pod}")
    }

    /// One round: the writes needed, at most [`MAX_WRITES_PER_INTERVAL`]. `leaving`:
    /// this pod stops, so its entries go.
    async fn write(
        &mut self,
        resources: &[Arc<SmppAccount>],
        outcomes: &BTreeMap<String, Result<(), Problem>>,
        leaving: bool,
    ) {
        let now = Timestamp::now();
        let mut writes = Vec::new();
        let mut sorted: Vec<&Arc<SmppAccount>> = resources.iter().collect();
        sorted.sort_by_key(|r| r.name_any());
        for r in sorted {
            let Some(outcome) = outcomes.get(&r.name_any()) else { continue };
            let count = match (leaving, outcome) {
                (false, Ok(())) => self.settings.sessions.sessions(&r.spec.system_id),
                _ => 0,
            };
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            let plan = plan(r, outcome, &self.settings.pod, count, now);
            if let Some(status) = plan.status {
                writes.push((r.name_any(), Self::manager(&self.settings.pod), status));
            }
            for pod in plan.stale {
                writes.push((r.name_any(), Self::manager(&pod), serde_json::json!({})));
            }
        }
        if writes.is_empty() {
            return;
        }
        let start = self.cursor % writes.len();
        writes.rotate_left(start);
        let limit = if leaving { writes.len() } else { MAX_WRITES_PER_INTERVAL };
        self.cursor = self.cursor.wrapping_add(limit.min(writes.len()));
        for (name, manager, status) in writes.into_iter().take(limit) {
            let body = serde_json::json!({
                "apiVersion": SmppAccount::api_version(&()),
                "kind": SmppAccount::kind(&()),
                "status": status,
            });
            let params = PatchParams::apply(&manager).force();
            match self.api.patch_status(&name, &params, &Patch::Apply(body)).await {
                Ok(_) => debug!(resource = %name, %manager, "status written"),
                Err(e) => {
                    let now = tokio::time::Instant::now();
                    if self.warned.is_none_or(|t| now.duration_since(t) >= REFRESH) {
                        self.warned = Some(now);
                        // Often RBAC: `patch` on `smppaccounts/status` is needed.
                        warn!(resource = %name, error = %e, "SmppAccount status not written; retrying each interval");
                    } else {
                        debug!(resource = %name, error = %e, "status not written; next interval");
                    }
                }
            }
        }
    }
}

/// What one pod writes for one resource.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// The status to apply as this pod, if what the resource shows differs.
    status: Option<serde_json::Value>,
    /// Pods whose entries are stale, to remove.
    stale: Vec<String>,
}

fn plan(
    r: &SmppAccount,
    outcome: &Result<(), Problem>,
    pod: &str,
    count: u32,
    now: Timestamp,
) -> Plan {
    let observed = r.status.clone().unwrap_or_default();
    let generation = r.metadata.generation;
    let age = |entry: &PodSessions| {
        entry
            .updated
            .parse::<Timestamp>()
            .ok()
            .and_then(|t| Duration::try_from(now.duration_since(t)).ok())
            .unwrap_or(Duration::MAX)
    };
    let mut stale = Vec::new();
    let mut others = 0u32;
    let mut mine = None;
    for entry in &observed.pods {
        if entry.pod == pod {
            mine = Some(entry);
        } else if age(entry) > STALE {
            stale.push(entry.pod.clone());
        } else {
            others = others.saturating_add(entry.sessions);
        }
    }
    let entry = (count > 0).then(|| PodSessions {
        pod: pod.to_owned(),
        sessions: count,
        updated: match mine {
            Some(m) if m.sessions == count && age(m) < REFRESH => m.updated.clone(),
            _ => now.to_string(),
        },
    });
    let (status, reason, message) = match outcome {
        Ok(()) => ("True", "Accepted", "used by the edges".to_owned()),
        Err(p) => ("False", p.reason(), p.to_string()),
    };
    let observed_ready = observed.conditions.iter().find(|c| c.type_ == "Ready");
    let condition = Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message: message.clone(),
        last_transition_time: match observed_ready {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => now.to_string(),
        },
        observed_generation: generation,
    };
    let desired = SmppAccountStatus {
        sessions: Some(others.saturating_add(count)),
        pods: entry.clone().into_iter().collect(),
        conditions: vec![condition.clone()],
        message: outcome.as_ref().err().map(|_| message),
        observed_generation: generation,
    };
    let same = observed.sessions == desired.sessions
        && observed_ready == Some(&condition)
        && observed.message == desired.message
        && observed.observed_generation == generation
        && mine == entry.as_ref();
    Plan { status: (!same).then(|| serde_json::to_value(&desired).unwrap_or_default()), stale }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::fixtures::resource;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn status_of(plan: &Plan) -> SmppAccountStatus {
        serde_json::from_value(plan.status.clone().expect("a write")).expect("status")
    }

    #[test]
    fn writes_only_what_changed() {
        let now = at("2026-06-01T12:00:00Z");
        let mut r = resource("bank", "BANK", "pw");
        let first = plan(&r, &Ok(()), "edge-a", 3, now);
        let s = status_of(&first);
        assert_eq!(s.sessions, Some(3));
        assert_eq!(
            s.pods,
            vec![PodSessions { pod: "edge-a".into(), sessions: 3, updated: now.to_string() }]
        );
        assert_eq!(
            (s.conditions[0].status.as_str(), s.conditions[0].reason.as_str()),
            ("True", "Accepted")
        );
        assert_eq!(s.message, None);

        // What was written is what the resource shows now: nothing more to write, also
        // a minute later.
        r.status = Some(s.clone());
        let later = at("2026-06-01T12:01:00Z");
        assert_eq!(plan(&r, &Ok(()), "edge-a", 3, later), Plan::default());
        // Another pod adds its entry and the total; the condition keeps its time.
        let b = status_of(&plan(&r, &Ok(()), "edge-b", 2, later));
        assert_eq!(b.sessions, Some(5));
        assert_eq!(b.pods.len(), 1, "only its own entry: {b:?}");
        assert_eq!(b.conditions[0].last_transition_time, now.to_string());
        // A changed count is written; so is an unchanged one after REFRESH.
        assert!(plan(&r, &Ok(()), "edge-a", 4, later).status.is_some());
        let refresh = at("2026-06-01T12:06:00Z");
        let s = status_of(&plan(&r, &Ok(()), "edge-a", 3, refresh));
        assert_eq!(s.pods[0].updated, refresh.to_string());
        // No sessions: the entry goes.
        let s = status_of(&plan(&r, &Ok(()), "edge-a", 0, later));
        assert!(s.pods.is_empty());
        assert_eq!(s.sessions, Some(0));
    }

    #[test]
    fn a_problem_is_reported_and_stale_pods_are_removed() {
        let now = at("2026-06-01T12:00:00Z");
        let mut r = resource("bank", "BANK", "pw");
        r.status = Some(SmppAccountStatus {
            sessions: Some(9),
            pods: vec![
                PodSessions {
                    pod: "gone".into(),
                    sessions: 7,
                    updated: "2026-06-01T11:00:00Z".into(),
                },
                PodSessions {
                    pod: "alive".into(),
                    sessions: 2,
                    updated: "2026-06-01T11:59:00Z".into(),
                },
            ],
            ..SmppAccountStatus::default()
        });
        let problem = Problem::SecretNotFound { name: "pw".into() };
        let p = plan(&r, &Err(problem), "edge-a", 0, now);
        assert_eq!(p.stale, vec!["gone".to_owned()]);
        let s = status_of(&p);
        assert_eq!(s.sessions, Some(2), "the stale entry does not count");
        assert_eq!(s.conditions[0].status, "False");
        assert_eq!(s.conditions[0].reason, "SecretNotFound");
        assert_eq!(s.message.as_deref(), Some("Secret \"pw\" not found"));
        assert_eq!(s.observed_generation, Some(1));
    }
}
