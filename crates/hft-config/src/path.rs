//! Dotted field paths such as `strategies[0].market_making.risk_aversion`: the one name of
//! a setting that error messages, environment variables and the TOML layers share, so an
//! error can be traced back to the layer (and line) that set the value.

use std::fmt;

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A table key.
    Key(String),
    /// A list element.
    Index(usize),
}

/// Where a value sits in the configuration tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<Seg>);

impl FieldPath {
    /// Builds a path from its steps.
    pub(crate) fn from_segs(segs: Vec<Seg>) -> Self {
        Self(segs)
    }

    /// The path of key `k` under this path.
    pub(crate) fn key(&self, k: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(k.to_owned()));
        Self(segs)
    }

    /// The path of element `i` of the list at this path.
    pub(crate) fn index(&self, i: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(i));
        Self(segs)
    }

    /// The steps, from the root.
    pub(crate) fn segs(&self) -> &[Seg] {
        &self.0
    }

    /// Number of steps.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The path without its last step (the root stays the root).
    pub(crate) fn parent(&self) -> Self {
        let mut segs = self.0.clone();
        segs.pop();
        Self(segs)
    }

    /// The last key of the path, if the path ends in a key.
    pub(crate) fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Seg::Key(k)) => Some(k),
            _ => None,
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_dotted_with_indices_and_quotes_odd_keys() {
        let p = FieldPath::default()
            .key("strategies")
            .index(0)
            .key("market_making")
            .key("risk_aversion");
        assert_eq!(p.to_string(), "strategies[0].market_making.risk_aversion");
        assert_eq!(FieldPath::default().key("a.b").to_string(), "\"a.b\"");
        assert_eq!(p.parent().last_key(), Some("market_making"));
    }
}
