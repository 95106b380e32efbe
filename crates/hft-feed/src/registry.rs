//! Symbol → instrument resolution for feeds: every source names instruments its own
//! way, the engines index them by `InstrumentId`.

use hft_core::{InstrumentId, InstrumentSpec, Money, Price, Qty};

/// The instruments a feed may publish, by venue symbol.
#[derive(Clone, Debug, Default)]
pub struct InstrumentRegistry {
    specs: Vec<InstrumentSpec>,
    auto: Option<(u8, u8)>,
}

impl InstrumentRegistry {
    /// A registry of known instruments; unknown symbols are refused.
    pub fn new(specs: Vec<InstrumentSpec>) -> Self {
        Self { specs, auto: None }
    }

    /// A registry that adds unknown symbols on first sight with the given scales and a
    /// one-unit tick and lot: for inspecting and importing files whose instruments are
    /// not configured yet.
    pub fn auto(price_scale: u8, qty_scale: u8) -> Self {
        Self {
            specs: Vec::new(),
            auto: Some((price_scale, qty_scale)),
        }
    }

    /// Known instruments first; unknown symbols are added as by [`Self::auto`]. For
    /// imports: configured instruments get their own scales (compact, exact), the rest
    /// the widest the decoder reads.
    pub fn known_then_auto(specs: Vec<InstrumentSpec>, price_scale: u8, qty_scale: u8) -> Self {
        Self {
            specs,
            auto: Some((price_scale, qty_scale)),
        }
    }

    /// The instrument of `symbol`, registering it if the registry is automatic.
    #[inline]
    pub fn resolve(&mut self, symbol: &str) -> Option<&InstrumentSpec> {
        if let Some(i) = self.specs.iter().position(|s| s.symbol == symbol) {
            return self.specs.get(i);
        }
        let (ps, qs) = self.auto?;
        let id = InstrumentId(u32::try_from(self.specs.len()).ok()?);
        let spec = InstrumentSpec {
            min_notional: Money::ZERO,
            ..InstrumentSpec::new(id, symbol, ps, qs, Price(1), Qty(1))
        };
        self.specs.push(spec);
        self.specs.last()
    }

    /// Instruments known so far, indexed by id.
    pub fn specs(&self) -> &[InstrumentSpec] {
        &self.specs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_registry_refuses_and_auto_registers() {
        let spec = InstrumentSpec::new(InstrumentId(0), "BTCUSDT", 2, 5, Price(1), Qty(1));
        let mut fixed = InstrumentRegistry::new(vec![spec]);
        assert_eq!(
            fixed.resolve("BTCUSDT").map(|s| s.id),
            Some(InstrumentId(0))
        );
        assert!(fixed.resolve("ETHUSDT").is_none());
        let mut auto = InstrumentRegistry::auto(8, 8);
        assert_eq!(auto.resolve("A").map(|s| s.id), Some(InstrumentId(0)));
        assert_eq!(auto.resolve("B").map(|s| s.id), Some(InstrumentId(1)));
        assert_eq!(auto.resolve("A").map(|s| s.id), Some(InstrumentId(0)));
        assert_eq!(auto.specs().len(), 2);
        let spec = InstrumentSpec::new(InstrumentId(0), "BTCUSDT", 2, 5, Price(1), Qty(1));
        let mut both = InstrumentRegistry::known_then_auto(vec![spec], 8, 8);
        assert_eq!(both.resolve("BTCUSDT").map(|s| s.price_scale), Some(2));
        assert_eq!(
            both.resolve("ETHUSDT").map(|s| (s.id, s.price_scale)),
            Some((InstrumentId(1), 8))
        );
    }
}
