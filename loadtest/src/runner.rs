//! Runs a [`Plan`]: binds every session, starts the clock, watches the load phase and
//! the receipt wait, stops the sessions, and merges what they measured.

use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{BindMode, Executor, Plan};
use crate::metrics::{IdMap, Live, Stats};
use crate::session::{BindAs, Outcome, RunShared, ScenarioRun, Session, connect};
use crate::summary::{Report, ScenarioResult};
use crate::template::Templates;

/// How the run reports while it goes.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// A progress line on stderr every second.
    pub progress: bool,
    /// How long a connect and bind may take.
    pub bind_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { progress: false, bind_timeout: Duration::from_secs(10) }
    }
}

/// Why no report came out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A scenario's messages cannot be encoded.
    #[error("scenario {scenario}: {message}")]
    Config { scenario: String, message: String },
    /// Some sessions could not connect or bind; nothing was sent.
    #[error("setup failed, no load sent:\n  {}", .0.join("\n  "))]
    Setup(Vec<String>),
    #[error("interrupted while binding")]
    Interrupted,
}

/// One session to open.
#[derive(Debug, Clone)]
struct Spec {
    scenario: usize,
    vu: Option<usize>,
    bind_as: BindAs,
    target: String,
    label: String,
}

fn specs(plan: &Plan) -> Vec<Spec> {
    let mut out = Vec::new();
    for (i, s) in plan.scenarios.iter().enumerate() {
        for vu in 0..s.executor.vus() {
            let target = s.targets[vu % s.targets.len()].clone();
            let (bind_as, receiver) = match s.bind {
                BindMode::Transceiver => (BindAs::Transceiver, false),
                BindMode::Transmitter => (BindAs::Transmitter, false),
                BindMode::ReceiverTransmitter => (BindAs::Transmitter, true),
            };
            out.push(Spec {
                scenario: i,
                vu: Some(vu),
                bind_as,
                target: target.clone(),
                label: format!("{}#{vu}", s.name),
            });
            if receiver {
                out.push(Spec {
                    scenario: i,
                    vu: None,
                    bind_as: BindAs::Receiver,
                    target,
                    label: format!("{}#{vu} receiver", s.name),
                });
            }
        }
    }
    out
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Runs the plan until its load phases and receipt wait are over, or `shutdown`
/// resolves (then it stops at once and reports what it has).
pub async fn run(
    plan: &Plan,
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<Report, RunError> {
    let mut runs = Vec::with_capacity(plan.scenarios.len());
    for (index, s) in plan.scenarios.iter().enumerate() {
        let templates = Templates::new(&s.message)
            .map_err(|e| RunError::Config { scenario: s.name.clone(), message: e.to_string() })?;
        let start_ns = nanos(s.start_time);
        let budget = match s.executor {
            Executor::SharedIterations { iterations, .. } => {
                Some(AtomicI64::new(i64::try_from(iterations).unwrap_or(i64::MAX)))
            }
            _ => None,
        };
        runs.push(Arc::new(ScenarioRun {
            index,
            start_ns,
            end_ns: start_ns.saturating_add(nanos(s.executor.duration())),
            graceful_ns: nanos(s.graceful_stop),
            schedule: s.executor.schedule(),
            budget,
            vus: s.executor.vus(),
            window: s.window,
            templates,
        }));
    }

    // Bind everything before the clock starts, as k6 allocates its VUs first.
    let specs = specs(plan);
    let mut binds = JoinSet::new();
    for (i, spec) in specs.iter().enumerate() {
        let s = &plan.scenarios[spec.scenario];
        let (target, bind_as, timeout) = (spec.target.clone(), spec.bind_as, opts.bind_timeout);
        let (id, pw, st) = (s.system_id.clone(), s.password.clone(), s.system_type.clone());
        binds.spawn(async move { (i, connect(&target, bind_as, &id, &pw, &st, timeout).await) });
    }
    tokio::pin!(shutdown);
    let mut streams: Vec<Option<_>> = (0..specs.len()).map(|_| None).collect();
    let mut errors = Vec::new();
    loop {
        tokio::select! {
            next = binds.join_next() => match next {
                Some(Ok((i, Ok(conn)))) => streams[i] = Some(conn),
                Some(Ok((i, Err(e)))) => errors.push(format!("{}: {e}", specs[i].label)),
                Some(Err(e)) => errors.push(format!("bind task: {e}")),
                None => break,
            },
            () = &mut shutdown => return Err(RunError::Interrupted),
        }
    }
    if !errors.is_empty() {
        errors.sort();
        return Err(RunError::Setup(errors));
    }

    let shared = Arc::new(RunShared {
        t0: Instant::now(),
        abort: CancellationToken::new(),
        stop: CancellationToken::new(),
    });
    let mut lives = Vec::with_capacity(specs.len());
    let mut tasks = Vec::with_capacity(specs.len());
    for (i, (spec, conn)) in specs.iter().zip(streams).enumerate() {
        let Some((stream, rbuf)) = conn else { continue };
        let live = Arc::new(Live::default());
        lives.push(Arc::clone(&live));
        let session = Session::new(
            Arc::clone(&runs[spec.scenario]),
            Arc::clone(&shared),
            live,
            spec.vu,
            spec.label.clone(),
            i as u64 + 1,
        );
        tasks.push(tokio::spawn(session.run(stream, rbuf)));
    }

    let interrupted = watch(plan, opts, &shared, &lives, shutdown).await;
    shared.stop.cancel();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for (task, spec) in tasks.into_iter().zip(&specs) {
        match task.await {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                let mut stats = Stats::new();
                stats.failures.push(format!("{}: session task: {e}", spec.label));
                outcomes.push(Outcome {
                    scenario: spec.scenario,
                    stats,
                    pending: IdMap::default(),
                    orphans: Vec::new(),
                });
            }
        }
    }
    let duration = shared.t0.elapsed();
    let mut report = merge(plan, outcomes, duration, interrupted);
    report.evaluate(&plan.thresholds);
    Ok(report)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    Load,
    Receipts { until: Instant },
}

/// Sums of what the sessions published.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    submits: u64,
    responses: u64,
    errors: u64,
    in_flight: u64,
    requested: u64,
    received: u64,
    drained: usize,
    open: usize,
}

fn totals(lives: &[Arc<Live>]) -> Totals {
    let mut t = Totals::default();
    for l in lives {
        t.submits += l.submits.load(Relaxed);
        t.responses += l.responses.load(Relaxed);
        t.errors += l.errors.load(Relaxed);
        t.in_flight += l.in_flight.load(Relaxed);
        t.requested += l.receipts_requested.load(Relaxed);
        t.received += l.receipts_received.load(Relaxed);
        t.drained += usize::from(l.drained.load(Relaxed));
        t.open += usize::from(!l.closed.load(Relaxed));
    }
    t
}

/// Waits for the load phases to end and the receipts to come (or the wait to run out);
/// prints the progress line. Returns whether `shutdown` cut it short.
async fn watch(
    plan: &Plan,
    opts: RunOptions,
    shared: &RunShared,
    lives: &[Arc<Live>],
    shutdown: impl Future<Output = ()>,
) -> bool {
    tokio::pin!(shutdown);
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut state = Watch::Load;
    let mut last_print = Instant::now();
    let mut last_submits = 0;
    let mut interrupted = false;
    let mut printed = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut shutdown => {
                shared.abort.cancel();
                interrupted = true;
            }
        }
        let t = totals(lives);
        let now = Instant::now();
        if opts.progress && now.duration_since(last_print) >= Duration::from_secs(1) {
            let secs = now.duration_since(last_print).as_secs_f64();
            let label = match state {
                Watch::Load if t.drained == lives.len() => "draining",
                Watch::Load => "running",
                Watch::Receipts { .. } => "waiting for receipts",
            };
            let line = format!(
                "{label} ({:.1}s), {}/{} sessions, submits {} ({:.0}/s), in flight {}, errors {}, receipts {}/{}",
                shared.t0.elapsed().as_secs_f64(),
                t.open,
                lives.len(),
                t.submits,
                (t.submits - last_submits.min(t.submits)) as f64 / secs,
                t.in_flight,
                t.errors,
                t.received,
                t.requested,
            );
            let mut err = std::io::stderr().lock();
            let _ = if tty { write!(err, "\r{line}\x1b[K") } else { writeln!(err, "{line}") };
            let _ = err.flush();
            printed = true;
            last_print = now;
            last_submits = t.submits;
        }
        if interrupted || t.open == 0 {
            break;
        }
        match state {
            Watch::Load if t.drained == lives.len() => {
                if t.requested > t.received && !plan.receipt_wait.is_zero() {
                    state = Watch::Receipts { until: now + plan.receipt_wait };
                } else {
                    break;
                }
            }
            Watch::Receipts { until } if t.received >= t.requested || now >= until => break,
            _ => {}
        }
    }
    if printed && tty {
        eprintln!();
    }
    interrupted
}

/// Adds up every session per scenario, and matches the receipts that arrived on
/// another session than their submit's.
fn merge(plan: &Plan, outcomes: Vec<Outcome>, duration: Duration, interrupted: bool) -> Report {
    let mut per: Vec<Stats> = plan.scenarios.iter().map(|_| Stats::new()).collect();
    let mut pending: IdMap<(u64, usize)> = IdMap::with_capacity_and_hasher(
        outcomes.iter().map(|o| o.pending.len()).sum(),
        Default::default(),
    );
    let mut orphans = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        per[o.scenario].merge(&o.stats);
        pending.extend(o.pending.into_iter().map(|(k, t)| (k, (t, o.scenario))));
        orphans.push((o.scenario, o.orphans));
    }
    for (received_by, list) in orphans {
        for (key, at) in list {
            match pending.remove(&key) {
                Some((t, submitted_by)) => {
                    let s = &mut per[submitted_by];
                    s.receipts_matched += 1;
                    s.receipt_latency.saturating_record(at.saturating_sub(t).max(1));
                }
                None => per[received_by].receipts_unmatched += 1,
            }
        }
    }
    let mut total = Stats::new();
    for s in &per {
        total.merge(s);
    }
    let scenarios = plan
        .scenarios
        .iter()
        .zip(per)
        .map(|(s, stats)| ScenarioResult {
            name: s.name.clone(),
            executor: s.executor.name(),
            stats,
        })
        .collect();
    Report { scenarios, total, thresholds: Vec::new(), duration, interrupted }
}
