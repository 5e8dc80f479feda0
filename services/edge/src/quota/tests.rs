use std::time::Duration;

use smsc_accounts::AccountConfig;
use smsc_accounts::testing::account;
use smsc_store::ManualClock;
use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};

use super::*;

/// 2026-12-07 14:00 UTC.
const NOW: UnixMillis = 1_796_652_000_000;

fn limited(daily: Option<u64>, monthly: Option<u64>) -> Account {
    let config = AccountConfig { quota: Quota { daily, monthly }, ..account("bank") };
    Account::from_config(&config).expect("account")
}

fn shared_store(clock: &Arc<ManualClock>) -> DynStore {
    Arc::new(EmbeddedStore::with_clock(EmbeddedStoreConfig::default(), clock.clone()))
}

/// Takes one message at a time until the edge says the quota is spent, letting leases
/// come in between; how many it got.
async fn take_until_spent(quotas: &Arc<Quotas>, account: &Account) -> (u64, Period) {
    let mut granted = 0;
    for _ in 0..1_000_000 {
        match quotas.take(account, 1) {
            Verdict::Granted => granted += 1,
            Verdict::Pending => tokio::task::yield_now().await,
            Verdict::Exhausted(period) => return (granted, period),
        }
    }
    panic!("never told the quota is spent ({granted} granted)");
}

/// Lets the leases asked for come in.
async fn settle(quotas: &Quotas) {
    for _ in 0..1000 {
        let asking = quotas.accounts.lock().expect("lock").values().any(|l| {
            let l = l.lock().expect("lock");
            l.day.asking || l.month.asking
        });
        if !asking {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("a lease never came");
}

#[test]
fn periods_are_utc_calendar_days_and_months() {
    assert_eq!(Period::Day.at(NOW), ("d2026-12-07".to_owned(), 1_796_688_000_000));
    let last_moment = 1_798_761_599_999; // 2026-12-31T23:59:59.999Z
    assert_eq!(Period::Day.at(last_moment).1, last_moment + 1);
    assert_eq!(Period::Month.at(last_moment), ("m2026-12".to_owned(), last_moment + 1));
    assert_eq!(Period::Month.at(last_moment + 1).0, "m2027-01");
}

#[tokio::test]
async fn two_edges_sharing_a_store_never_accept_more_than_the_quota() {
    let clock = Arc::new(ManualClock::new(NOW));
    let store = shared_store(&clock);
    let (a, b) = (Quotas::new(store.clone(), clock.clone()), Quotas::new(store.clone(), clock));
    let bank = limited(Some(1000), None);

    // The two take in turn, each from its own leases, until both are told it is spent.
    let (mut got, mut spent) = ([0u64; 2], [false; 2]);
    for _ in 0..1_000_000 {
        if spent == [true; 2] {
            break;
        }
        for (i, edge) in [&a, &b].into_iter().enumerate() {
            match edge.take(&bank, 1) {
                Verdict::Granted => got[i] += 1,
                Verdict::Pending => tokio::task::yield_now().await,
                Verdict::Exhausted(period) => {
                    assert_eq!(period, Period::Day);
                    spent[i] = true;
                }
            }
        }
    }
    assert_eq!(spent, [true; 2]);
    assert_eq!(got[0] + got[1], 1000, "together exactly the quota: {got:?}");
    assert!(got[0] > 0 && got[1] > 0, "both took part: {got:?}");
    assert_eq!(a.take(&bank, 1), Verdict::Exhausted(Period::Day));
}

#[tokio::test]
async fn unspent_leases_go_back_to_the_store_at_shutdown() {
    let clock = Arc::new(ManualClock::new(NOW));
    let store = shared_store(&clock);
    let bank = limited(Some(640), None);
    let a = Quotas::new(store.clone(), clock.clone());
    a.prepare(&bank);
    while a.take(&bank, 1) == Verdict::Pending {
        tokio::task::yield_now().await;
    }
    // One taken of a lease of 10 (640 / 64): 9 held unspent.
    a.give_back().await;
    let ttl = Period::Day.ttl();
    let left = store.take_quota("bank", "d2026-12-07", 1000, 640, ttl).await.expect("take");
    assert_eq!(left, 639, "only the message accepted counts");
}

#[tokio::test]
async fn the_daily_quota_starts_over_each_day_and_the_monthly_one_keeps_counting() {
    let clock = Arc::new(ManualClock::new(NOW));
    let store = shared_store(&clock);
    let edge = Quotas::new(store, clock.clone());
    let bank = limited(Some(30), Some(50));

    assert_eq!(take_until_spent(&edge, &bank).await, (30, Period::Day));
    clock.advance(Duration::from_secs(86_400));
    assert_eq!(take_until_spent(&edge, &bank).await, (20, Period::Month), "50 in the month");
    clock.advance(Duration::from_secs(24 * 86_400)); // 2027-01-01
    assert_eq!(take_until_spent(&edge, &bank).await, (30, Period::Day), "a new month");
}

#[tokio::test]
async fn a_submit_of_several_destinations_takes_them_all_or_none() {
    let clock = Arc::new(ManualClock::new(NOW));
    let edge = Quotas::new(shared_store(&clock), clock);
    let bank = limited(Some(3), None);
    edge.prepare(&bank);
    let (mut granted, mut verdict) = (0, Verdict::Pending);
    for _ in 0..1_000_000 {
        if verdict == Verdict::Exhausted(Period::Day) {
            break;
        }
        verdict = edge.take(&bank, 2);
        granted += u64::from(verdict == Verdict::Granted) * 2;
        tokio::task::yield_now().await;
    }
    assert_eq!(verdict, Verdict::Exhausted(Period::Day));
    assert_eq!(granted, 2, "a second pair would pass the quota of 3");
    edge.refund(&bank, 2, NOW);
    assert_eq!(edge.take(&bank, 2), Verdict::Granted, "refunded: taken again");
}

#[tokio::test]
async fn what_comes_or_goes_back_after_the_period_turned_counts_in_the_old_one() {
    let clock = Arc::new(ManualClock::new(NOW));
    let store = shared_store(&clock);
    let edge = Quotas::new(store.clone(), clock.clone());
    let bank = limited(Some(640), None);
    // A lease asked for on the 7th comes back on the 8th (the task runs after midnight).
    edge.prepare(&bank);
    clock.advance(Duration::from_secs(86_400));
    settle(&edge).await;
    let ttl = Period::Day.ttl();
    let used_on_the_7th =
        640 - store.take_quota("bank", "d2026-12-07", 640, 640, ttl).await.expect("take");
    assert_eq!(used_on_the_7th, 10, "the block was taken from the 7th's quota");
    assert_eq!(take_until_spent(&edge, &bank).await, (640, Period::Day), "the 8th's quota whole");
    // A refund of the 7th does not swell the 8th's.
    edge.refund(&bank, 5, NOW);
    assert_eq!(edge.take(&bank, 1), Verdict::Exhausted(Period::Day));
}

#[tokio::test]
async fn a_raised_limit_is_followed_at_once() {
    let clock = Arc::new(ManualClock::new(NOW));
    let edge = Quotas::new(shared_store(&clock), clock);
    let bank = limited(Some(5), None);
    assert_eq!(take_until_spent(&edge, &bank).await, (5, Period::Day));
    let raised = limited(Some(8), None);
    assert_eq!(take_until_spent(&edge, &raised).await, (3, Period::Day));
}

#[tokio::test]
async fn an_account_without_a_quota_never_touches_the_store() {
    let clock = Arc::new(ManualClock::new(NOW));
    let edge = Quotas::new(shared_store(&clock), clock);
    let free = Account::from_config(&account("free")).expect("account");
    assert_eq!(edge.take(&free, 1_000_000), Verdict::Granted);
    assert!(edge.accounts.lock().expect("lock").is_empty());
}
