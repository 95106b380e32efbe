use super::*;
use proptest::prelude::*;

fn logon(ts: u64, strategy: u16, epoch: u64) -> VenueEvent {
    VenueEvent::Logon {
        ts,
        strategy,
        epoch,
        node: 1,
    }
}

fn accept(ts: u64, strategy: u16, epoch: u64) -> VenueEvent {
    VenueEvent::Accept {
        ts,
        strategy,
        epoch,
        order: ts,
        price: 100,
        qty: 1,
    }
}

fn fill(ts: u64, strategy: u16, exec: u64, qty: i64) -> VenueEvent {
    VenueEvent::Fill {
        ts,
        strategy,
        exec,
        order: ts,
        side: u8::from(qty < 0),
        price: 100,
        qty: qty.abs(),
    }
}

/// A clean run: two owners of strategy 0 in turn, fills booked once each.
fn clean() -> (Vec<VenueEvent>, Vec<Member>) {
    let events = vec![
        logon(1, 0, 5),
        accept(2, 0, 5),
        fill(3, 0, 1, 2),
        logon(4, 0, 7),
        accept(5, 0, 7),
        fill(6, 0, 2, -1),
    ];
    let booked = vec![
        Booked {
            exec: 1,
            strategy: 0,
            qty: 2,
        },
        Booked {
            exec: 2,
            strategy: 0,
            qty: -1,
        },
    ];
    let members = (1..=3)
        .map(|id| Member {
            id,
            fills: booked.clone(),
            hash: [7; 32],
        })
        .collect();
    (events, members)
}

fn rules() -> Rules {
    Rules {
        max_position: [(0, 3)].into_iter().collect(),
        // Price 100 × qty 1 at shift 1 is a notional of 10.
        notional: [(
            0,
            Notional {
                shift: 1,
                max_order: 50,
            },
        )]
        .into_iter()
        .collect(),
        max_gross_notional: Some(1_000),
        kills: Vec::new(),
        kill_grace_ns: 0,
    }
}

#[test]
fn an_order_past_its_notional_limit_is_reported() {
    let (mut e, m) = clean();
    assert_eq!(check(&e, &m, &rules()), vec![]);
    // 100 × 5 / 10 = 50: at the limit; 6 lots are 60.
    let order = |order, qty| VenueEvent::Accept {
        ts: 7,
        strategy: 0,
        epoch: 7,
        order,
        price: 100,
        qty,
    };
    let (at, past) = (order(9, 5), order(10, 6));
    e.push(at);
    assert_eq!(check(&e, &m, &rules()), vec![]);
    e.push(past.clone());
    assert_eq!(
        check(&e, &m, &rules()),
        vec![Violation::OrderNotional {
            limit: 50,
            notional: 60,
            accept: past
        }]
    );
}

#[test]
fn a_gross_notional_breach_is_reported_only_when_a_fill_grows_it() {
    let mut r = rules();
    r.max_position.clear();
    r.max_gross_notional = Some(25);
    // Position 2 at 100: 20. Position 3 at 100: 30, past 25.
    let mut e = vec![logon(1, 0, 5), fill(2, 0, 1, 2)];
    assert_eq!(check(&e, &[], &r), vec![]);
    e.push(fill(3, 0, 2, 1));
    assert_eq!(
        check(&e, &[], &r),
        vec![Violation::GrossNotional {
            limit: 25,
            gross: 30,
            fill: fill(3, 0, 2, 1)
        }]
    );
    // Reducing the position back is no new breach.
    e.push(fill(4, 0, 3, -2));
    assert_eq!(check(&e, &[], &r).len(), 1);
}

#[test]
fn gross_notional_counts_the_strategies_of_one_node() {
    let mut r = rules();
    r.max_position.clear();
    r.max_gross_notional = Some(25);
    r.notional.insert(1, r.notional[&0]);
    let logon_on = |ts, strategy, node| VenueEvent::Logon {
        ts,
        strategy,
        epoch: 5,
        node,
    };
    // 20 on node 1 and 20 on node 2: each node within 25.
    let mut e = vec![
        logon_on(1, 0, 1),
        logon_on(2, 1, 2),
        fill(3, 0, 1, 2),
        fill(4, 1, 2, 2),
    ];
    assert_eq!(check(&e, &[], &r), vec![]);
    // Strategy 1 moves to node 1: its next fill makes node 1 hold 20 + 30.
    e.push(VenueEvent::Logon {
        ts: 5,
        strategy: 1,
        epoch: 6,
        node: 1,
    });
    e.push(fill(6, 1, 3, 1));
    let v = check(&e, &[], &r);
    assert_eq!(
        v,
        vec![Violation::GrossNotional {
            limit: 25,
            gross: 50,
            fill: fill(6, 1, 3, 1)
        }]
    );
}

#[test]
fn notional_rounds_to_the_nearest_unit_and_scales_both_ways() {
    let n = |shift| Notional {
        shift,
        max_order: 0,
    };
    assert_eq!(n(2).of(149, 1), 1);
    assert_eq!(n(2).of(150, 1), 2);
    assert_eq!(n(-2).of(3, 4), 1_200);
    assert_eq!(n(0).of(-3, 4), 12);
    assert_eq!(
        n(0).of(i64::MAX, i64::MAX),
        i128::from(i64::MAX) * i128::from(i64::MAX)
    );
}

#[test]
fn a_clean_run_has_no_violation() {
    let (e, m) = clean();
    assert_eq!(check(&e, &m, &rules()), vec![]);
}

#[test]
fn a_duplicated_fill_is_reported() {
    let (e, mut m) = clean();
    let again = m[1].fills[0].clone();
    m[1].fills.push(again);
    let v = check(&e, &m, &rules());
    assert!(v.contains(&Violation::Duplicated {
        member: 2,
        exec: 1,
        times: 2
    }));
    // The doubled quantity also shows as a position the venue never had.
    assert!(
        v.iter()
            .any(|x| matches!(x, Violation::Position { member: 2, .. }))
    );
}

#[test]
fn a_lost_fill_is_reported_with_the_fill() {
    let (e, mut m) = clean();
    m[2].fills.remove(1);
    let v = check(&e, &m, &rules());
    assert!(v.contains(&Violation::Lost {
        member: 3,
        fill: fill(6, 0, 2, -1)
    }));
}

#[test]
fn a_limit_breach_is_reported_at_the_fill_that_made_it() {
    let (mut e, _) = clean();
    // +2 -1 = 1, then -4 makes -3: at the limit, fine; a further -1 breaks it.
    e.push(fill(7, 0, 3, -4));
    assert_eq!(check(&e, &[], &rules()), vec![]);
    e.push(fill(8, 0, 4, -1));
    assert_eq!(
        check(&e, &[], &rules()),
        vec![Violation::Limit {
            strategy: 0,
            limit: 3,
            position: -4,
            fill: fill(8, 0, 4, -1)
        }]
    );
}

#[test]
fn an_order_accepted_from_a_fenced_owner_is_reported() {
    let (mut e, m) = clean();
    // The epoch-5 owner gets an order in after the epoch-7 logon.
    e.insert(4, accept(4, 0, 5));
    let v = check(&e, &m, &rules());
    assert_eq!(
        v,
        vec![Violation::StaleEpoch {
            logon: logon(4, 0, 7),
            accept: accept(4, 0, 5)
        }]
    );
    // A stale logon the venue refused changes nothing.
    let (mut e, m) = clean();
    e.push(VenueEvent::LogonReject {
        ts: 9,
        strategy: 0,
        epoch: 6,
    });
    assert_eq!(check(&e, &m, &rules()), vec![]);
}

#[test]
fn an_order_accepted_while_killed_is_reported_after_the_grace() {
    let (e, m) = clean();
    let mut r = rules();
    r.kills.push(KillWindow {
        strategy: Some(0),
        from: 4,
        to: None,
    });
    r.kill_grace_ns = 0;
    let v = check(&e, &m, &r);
    assert_eq!(v.len(), 1, "{v:?}");
    let late = accept(5, 0, 7);
    assert!(matches!(&v[0], Violation::WhileKilled { accept: a, .. } if *a == late));
    // Inside the grace, or for another strategy, or after the release: fine.
    r.kill_grace_ns = 2;
    assert_eq!(check(&e, &m, &r), vec![]);
    r.kill_grace_ns = 0;
    r.kills[0].strategy = Some(1);
    assert_eq!(check(&e, &m, &r), vec![]);
    r.kills[0] = KillWindow {
        strategy: None,
        from: 1,
        to: Some(2),
    };
    assert_eq!(check(&e, &m, &r), vec![]);
}

#[test]
fn phantom_fills_and_diverged_members_are_reported() {
    let (e, mut m) = clean();
    m[0].fills.push(Booked {
        exec: 99,
        strategy: 0,
        qty: 0,
    });
    m[2].hash = [8; 32];
    let v = check(&e, &m, &rules());
    assert!(
        v.iter()
            .any(|x| matches!(x, Violation::Phantom { member: 1, booked } if booked.exec == 99))
    );
    assert!(v.iter().any(|x| matches!(x, Violation::Diverged { .. })));
    for x in &v {
        assert!(!x.to_string().is_empty());
    }
}

#[test]
fn the_history_parses_with_a_torn_tail_and_names_a_bad_line() {
    let text = concat!(
        r#"{"t":"logon","ts":1,"strategy":0,"epoch":5,"node":2}"#,
        "\n",
        r#"{"t":"accept","ts":2,"strategy":0,"epoch":5,"order":9}"#,
        "\n",
        r#"{"t":"fill","ts":3,"strategy":0,"exec":1,"order":9,"side":0,"price":10,"qty":2}"#,
        "\n",
        r#"{"t":"logon_reject","ts":4,"strategy":0,"epoch":4,"node":3,"newest":5}"#,
        "\n",
        r#"{"t":"fill","ts":5,"stra"#,
    );
    let e = parse_history(text).unwrap();
    assert_eq!(e.len(), 4);
    assert_eq!(e[0], logon(1, 0, 5).clone_with_node(2));
    let bad = "{\"t\":\"nope\"}\n{\"t\":\"accept\"}\n";
    let err = parse_history(bad).unwrap_err();
    assert_eq!(err.line, 1);
}

impl VenueEvent {
    fn clone_with_node(&self, n: u64) -> Self {
        match self.clone() {
            VenueEvent::Logon {
                ts,
                strategy,
                epoch,
                ..
            } => VenueEvent::Logon {
                ts,
                strategy,
                epoch,
                node: n,
            },
            other => other,
        }
    }
}

proptest! {
    /// Any consistent run checks clean; dropping any one booked fill from any member is
    /// reported as exactly that fill lost.
    #[test]
    fn consistent_runs_pass_and_any_dropped_fill_is_found(
        qtys in proptest::collection::vec(-5i64..=5, 1..40),
        drop_at in any::<prop::sample::Index>(),
        member in 0usize..3,
    ) {
        let qtys: Vec<i64> = qtys.into_iter().filter(|q| *q != 0).collect();
        prop_assume!(!qtys.is_empty());
        let mut events = vec![logon(0, 0, 1)];
        let mut booked = Vec::new();
        for (i, q) in qtys.iter().enumerate() {
            let ts = i as u64 + 1;
            events.push(accept(ts, 0, 1));
            events.push(fill(ts, 0, ts, *q));
            booked.push(Booked { exec: ts, strategy: 0, qty: *q });
        }
        let mut members: Vec<Member> = (1..=3)
            .map(|id| Member { id, fills: booked.clone(), hash: [1; 32] })
            .collect();
        let r = Rules::default();
        prop_assert_eq!(check(&events, &members, &r), vec![]);
        let k = drop_at.index(booked.len());
        let gone = members[member].fills.remove(k);
        let v = check(&events, &members, &r);
        let lost_one = v.iter().any(|x| matches!(x, Violation::Lost { member: m, fill: VenueEvent::Fill { exec, .. } } if *m == member as u64 + 1 && *exec == gone.exec));
        prop_assert!(lost_one, "{:?}", v);
    }
}
