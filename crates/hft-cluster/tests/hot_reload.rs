//! A live session follows its configuration in a real etcd: a new risk limit reaches
//! every running engine; a malformed value written by hand is refused with the key
//! named, and the engines keep running the old configuration.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hft_cluster::coord::Coord;
use hft_cluster::live::{LiveOptions, LiveView};
use hft_cluster::local_etcd::LocalEtcd;
use hft_cluster::reload::{ReloadStatus, follow};
use hft_cluster::ring::IdleMode;

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < end, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn risk_limits_reload_into_running_engines_and_bad_values_are_refused() {
    let dir = std::env::temp_dir().join(format!("hft-reload-{}", std::process::id()));
    let etcd = LocalEtcd::start(Path::new("etcd"), &dir, 1)
        .expect("etcd runs (scripts/test.sh installs etcd-server)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let base = hft_config::load(None, std::iter::empty()).unwrap();
    let mut coord = rt
        .block_on(Coord::connect(&etcd.clients, "t", Duration::from_secs(20)))
        .unwrap();
    let r1 = rt
        .block_on(coord.config_set(&base.to_toml_string(), Some(0), "test"))
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let status = Arc::new(Mutex::new(ReloadStatus::default()));
    rt.spawn(follow(
        coord.clone(),
        r1,
        base.clone(),
        Vec::new(),
        tx,
        status.clone(),
    ));

    let parts = hft_cluster::node::build(&base, 1, 0);
    let shutdown = Arc::new(AtomicBool::new(false));
    let view: Arc<Mutex<Option<LiveView>>> = Arc::default();
    let (v2, stop) = (view.clone(), shutdown.clone());
    let opts = LiveOptions {
        duration: None,
        shutdown: stop,
        ring_capacity: 4096,
        timer_interval: Duration::from_millis(100),
        status_interval: Duration::from_millis(10),
        idle: IdleMode::Park,
        seed: 1,
        booking: None,
        reload: Some(rx),
    };
    let session = std::thread::spawn(move || {
        hft_cluster::live::run(parts, opts, move |v, _| {
            let mut slot = v2.lock().unwrap();
            if slot.is_none() {
                *slot = Some(v.clone());
            }
        })
    });
    wait_until("session started", || view.lock().unwrap().is_some());
    let view = view.lock().unwrap().clone().unwrap();
    let revisions = || {
        view.engines
            .iter()
            .map(|e| e.live.config_revision.load(Ordering::Acquire))
            .collect::<Vec<_>>()
    };

    let mut next = base.clone();
    next.strategies[0].risk.max_order_qty = hft_core::Qty(1);
    let r2 = rt
        .block_on(coord.config_set(&next.to_toml_string(), Some(r1), "test"))
        .unwrap() as u64;
    wait_until("every engine runs r2", || {
        revisions().iter().all(|&r| r == r2)
    });

    // By hand, bypassing validation: refused, the key named, the engines stay on r2.
    rt.block_on(coord.put_json("config", &"max_order_qty = [oops"))
        .unwrap();
    wait_until("the bad value is refused", || {
        status.lock().unwrap().rejected.is_some()
    });
    let (_, why) = status.lock().unwrap().rejected.clone().unwrap();
    assert!(why.contains("/hft/t/config"), "{why}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(revisions().iter().all(|&r| r == r2));

    shutdown.store(true, Ordering::SeqCst);
    let report = session.join().unwrap().unwrap();
    assert!(report.events > 0);
    drop(etcd);
}
