use super::*;

fn flow(class: Class, account: &'static str) -> Flow {
    Flow::new(class, Bytes::from_static(account.as_bytes()))
}

/// Receives and readies `n` records of `flow`, numbered from `first`.
fn feed(s: &mut Scheduler<u32>, f: &Flow, first: u32, n: u32) {
    for i in first..first + n {
        s.received(&f.account);
        s.ready(f.clone(), i);
    }
}

/// Starts records until none may start; returns their accounts in order.
fn drain(s: &mut Scheduler<u32>) -> Vec<String> {
    std::iter::from_fn(|| s.start_next())
        .map(|(f, _)| String::from_utf8_lossy(&f.account).into_owned())
        .collect()
}

#[test]
fn accounts_of_a_class_take_turns_whatever_their_backlog() {
    let mut s = Scheduler::new(8, 32, Shares::default());
    let (a, b) = (flow(Class::Standard, "a"), flow(Class::Standard, "b"));
    feed(&mut s, &b, 0, 1000);
    feed(&mut s, &a, 0, 3);
    let started = drain(&mut s);
    // Every lane but the one kept free for whoever comes next (an eighth of 8).
    assert_eq!(started.len(), 7, "{started:?}");
    assert_eq!(started.iter().filter(|x| *x == "a").count(), 3, "{started:?}");
    // b was first in turn; a's three come within the first six starts.
    assert!(started[..6].iter().filter(|x| *x == "a").count() == 3, "{started:?}");
}

#[test]
fn a_record_of_another_account_finds_a_lane_while_one_account_fills_the_rest() {
    let lanes = 16;
    let mut s = Scheduler::new(lanes, 4 * lanes, Shares::default());
    let (a, b) = (flow(Class::Bulk, "a"), flow(Class::Bulk, "b"));
    feed(&mut s, &b, 0, 1000);
    let started = drain(&mut s);
    // b alone: work-conserving up to the reserve (an eighth of the lanes).
    assert_eq!(started.len(), lanes - lanes / 8);
    // a arrives while b holds the lanes: it starts at once.
    feed(&mut s, &a, 0, 1);
    assert_eq!(drain(&mut s), vec!["a"]);
}

#[test]
fn a_lone_account_may_use_every_lane_when_there_is_no_reserve() {
    let mut s = Scheduler::new(4, 16, Shares::default());
    feed(&mut s, &flow(Class::Bulk, "b"), 0, 10);
    assert_eq!(drain(&mut s).len(), 4);
    assert!(s.start_next().is_none(), "every lane busy");
    s.finished(&Bytes::from_static(b"b"));
    assert_eq!(drain(&mut s).len(), 1, "a freed lane is taken again");
}

#[test]
fn classes_are_served_by_their_shares_and_none_starves() {
    let shares = Shares { interactive: 8, standard: 3, bulk: 1 };
    let mut s = Scheduler::new(1, 4, shares);
    let flows = Class::ALL.map(|c| flow(c, c.name()));
    for f in &flows {
        feed(&mut s, f, 0, 1000);
    }
    let mut served = HashMap::<String, usize>::default();
    for _ in 0..1200 {
        let (f, _) = s.start_next().expect("work is ready");
        *served.entry(f.class.name().to_owned()).or_default() += 1;
        s.finished(&f.account);
    }
    assert_eq!(served["interactive"], 800, "{served:?}");
    assert_eq!(served["standard"], 300, "{served:?}");
    assert_eq!(served["bulk"], 100, "{served:?}");
}

#[test]
fn a_class_without_work_gives_its_turns_away() {
    let mut s = Scheduler::new(1, 4, Shares::default());
    let bulk = flow(Class::Bulk, "b");
    feed(&mut s, &bulk, 0, 50);
    for i in 0..50 {
        let (f, item) = s.start_next().expect("bulk alone is served every time");
        assert_eq!((f.class, item), (Class::Bulk, i), "in order within the account");
        s.finished(&f.account);
    }
    assert!(s.start_next().is_none());
}

#[test]
fn a_higher_class_record_is_next_behind_a_bulk_backlog() {
    let mut s = Scheduler::new(1, 4, Shares::default());
    feed(&mut s, &flow(Class::Bulk, "b"), 0, 10_000);
    let (f, _) = s.start_next().expect("bulk");
    feed(&mut s, &flow(Class::Interactive, "a"), 0, 1);
    s.finished(&f.account);
    let (next, _) = s.start_next().expect("ready");
    assert_eq!(next.class, Class::Interactive);
}

#[test]
fn over_share_names_the_accounts_crowding_a_hop_that_falls_behind() {
    let threshold = 50;
    let mut s = Scheduler::<u32>::new(10, 100, Shares::default());
    let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"b"));
    let pass = |s: &mut Scheduler<u32>, account: &Bytes, n: usize| {
        for _ in 0..n {
            s.received(account);
            s.finished(account);
        }
    };
    pass(&mut s, &b, 200);
    assert!(s.over_share(49, threshold).is_empty(), "a lag under the threshold: keeping up");
    assert_eq!(s.over_share(50, threshold), vec![b.clone()], "alone and behind: slowed");
    pass(&mut s, &a, 3);
    assert_eq!(s.over_share(5000, threshold), vec![b.clone()], "a brings 3 of the last 100");
    pass(&mut s, &a, 47);
    let mut both = s.over_share(5000, threshold);
    both.sort();
    assert_eq!(both, vec![a.clone(), b.clone()], "half of the last 100 each");
    assert!(s.over_share(0, threshold).is_empty(), "caught up");
}

#[test]
fn raised_stays_within_the_accounts_ceiling() {
    use Class::*;
    assert_eq!(Bulk.raised(0, Interactive), Bulk);
    assert_eq!(Bulk.raised(1, Interactive), Standard);
    assert_eq!(Bulk.raised(3, Interactive), Interactive);
    assert_eq!(Bulk.raised(3, Standard), Standard);
    assert_eq!(Standard.raised(1, Bulk), Standard, "a ceiling below never lowers");
    assert_eq!(Standard.raised(0, Standard), Standard);
}

#[test]
fn a_flow_round_trips_through_a_records_headers() {
    let mut r = Record::new("k", "v");
    assert_eq!(Flow::of(&r), flow(Class::Standard, ""), "unmarked: standard, no account");
    let f = flow(Class::Interactive, "bank");
    f.mark(&mut r);
    assert_eq!(Flow::of(&r), f);
}
