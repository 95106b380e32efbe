//! Offline fitting of the ML strategy's model (`hft train`): the features the
//! strategy computes live, sampled over recorded data, labelled by the mid one horizon
//! later, and checked walk-forward (each fold is tested on data after everything it
//! was trained on) before the final model is fitted on all of it.

use crate::Loaded;
use hft_book::L2Book;
use hft_core::{MarketEventKind, Nanos, Side};
use hft_strategy::signals::{Features, LogisticModel};

/// How to train.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Instrument (symbol) of the data to train on; the first one when `None`.
    pub symbol: Option<String>,
    /// Label horizon, ns: the strategy's `horizon_ms`.
    pub horizon: Nanos,
    /// Sample period, ns.
    pub sample: Nanos,
    /// Walk-forward folds (the data is cut into `folds + 1` consecutive parts).
    pub folds: usize,
    /// Gradient descent epochs.
    pub epochs: usize,
    /// Learning rate.
    pub lr: f64,
    /// L2 penalty.
    pub l2: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            symbol: None,
            horizon: 1_000_000_000,
            sample: 250_000_000,
            folds: 4,
            epochs: 300,
            lr: 0.5,
            l2: 1e-4,
        }
    }
}

/// Out-of-sample result of one walk-forward fold.
#[derive(Clone, Debug, PartialEq)]
pub struct Fold {
    /// Rows trained on (every part before the test part).
    pub train_rows: usize,
    /// Rows tested on.
    pub test_rows: usize,
    /// Mean log-loss on the test part (0.693 is a coin flip).
    pub logloss: f64,
    /// Share of test rows whose direction the model got right.
    pub accuracy: f64,
    /// Share of up moves in the test part: the accuracy of always guessing the
    /// majority is `max(up, 1 - up)`.
    pub up_share: f64,
}

/// What training produced.
#[derive(Clone, Debug)]
pub struct TrainReport {
    /// Symbol trained on.
    pub symbol: String,
    /// Labelled rows.
    pub rows: usize,
    /// Walk-forward results, oldest test part first.
    pub folds: Vec<Fold>,
    /// The model fitted on every row.
    pub model: LogisticModel,
}

/// Labelled feature rows of one instrument: the features at each sample, and
/// whether the mid one horizon later was higher (rows where it did not move are left
/// out: they say nothing about direction).
pub fn dataset(loaded: &Loaded, index: usize, opts: &TrainOptions) -> (Vec<[f64; 4]>, Vec<bool>) {
    let Some(spec) = loaded.specs.get(index) else {
        return (Vec::new(), Vec::new());
    };
    let mut book = L2Book::for_spec(spec, crate::exchange::BOOK_LEVELS);
    let mut features = Features::new(50.0, 100.0);
    let tick = spec.tick_size.raw().max(1);
    let (mut next, mut last_mid) = (0, f64::NAN);
    let mut samples: Vec<(Nanos, f64, [f64; 4])> = Vec::new();
    for e in loaded.events.iter().filter(|e| e.instrument == spec.id) {
        let _ = book.apply(e);
        // As the strategy sees them: one event per venue message, the last.
        if !e.is_last() {
            continue;
        }
        if let MarketEventKind::Trade { aggressor, qty, .. } = e.kind {
            features.on_trade(aggressor == Side::Buy, qty.raw() as f64);
        }
        if book.is_crossed() {
            continue;
        }
        let Some(m2) = book.mid_x2() else { continue };
        let mid = m2 as f64 / 2.0;
        if mid != last_mid {
            features.on_mid(mid);
            last_mid = mid;
        }
        if e.ts_recv >= next {
            if let Some(x) = features.vector(&book, tick) {
                samples.push((e.ts_recv, mid, x));
                next = e.ts_recv + opts.sample.max(1);
            }
        }
    }
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    let mut j = 0;
    for (i, &(t, mid, x)) in samples.iter().enumerate() {
        j = j.max(i);
        while j < samples.len() && samples[j].0 < t + opts.horizon {
            j += 1;
        }
        let Some(&(_, later, _)) = samples.get(j) else {
            break;
        };
        if later != mid {
            xs.push(x);
            ys.push(later > mid);
        }
    }
    (xs, ys)
}

/// Trains on `loaded` (see [`TrainOptions`]).
pub fn train(loaded: &Loaded, opts: &TrainOptions) -> Result<TrainReport, String> {
    let index = match &opts.symbol {
        None => 0,
        Some(s) => loaded
            .specs
            .iter()
            .position(|sp| &sp.symbol == s)
            .ok_or_else(|| {
                let known: Vec<&str> = loaded.specs.iter().map(|s| s.symbol.as_str()).collect();
                format!(
                    "symbol {s:?} is not in the data; it has {}",
                    known.join(", ")
                )
            })?,
    };
    let symbol = loaded
        .specs
        .get(index)
        .map(|s| s.symbol.clone())
        .unwrap_or_default();
    let (xs, ys) = dataset(loaded, index, opts);
    let parts = opts.folds.max(1) + 1;
    if xs.len() < parts * 10 {
        return Err(format!(
            "only {} labelled rows for {symbol}: too few for {} walk-forward folds; use a shorter --sample-ms or --horizon-ms, fewer --folds, or more data",
            xs.len(),
            opts.folds
        ));
    }
    let cut = |k: usize| k * xs.len() / parts;
    // The last training rows are labelled by mids inside the test part: leave out a
    // horizon's worth of rows between the two so no test information leaks in.
    let embargo = (opts.horizon / opts.sample.max(1)) as usize + 1;
    let folds = (1..parts)
        .map(|k| {
            let (test_start, test_end) = (cut(k), cut(k + 1));
            let train_end = test_start.saturating_sub(embargo);
            let mut m = LogisticModel::new();
            m.fit(
                &xs[..train_end],
                &ys[..train_end],
                opts.epochs,
                opts.lr,
                opts.l2,
            );
            let (logloss, accuracy) =
                m.evaluate(&xs[test_start..test_end], &ys[test_start..test_end]);
            let test = &ys[test_start..test_end];
            Fold {
                train_rows: train_end,
                test_rows: test.len(),
                logloss,
                accuracy,
                up_share: test.iter().filter(|&&y| y).count() as f64 / test.len().max(1) as f64,
            }
        })
        .collect();
    let mut model = LogisticModel::new();
    model.fit(&xs, &ys, opts.epochs, opts.lr, opts.l2);
    Ok(TrainReport {
        symbol,
        rows: xs.len(),
        folds,
        model,
    })
}
