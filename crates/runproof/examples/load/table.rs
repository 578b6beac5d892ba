//! The cells of the Markdown table: figures read from the results' JSON, ratios, and each
//! target's mark, judged on the exact ratio. Depends on no other module.

use serde_json::Value;

/// The server's peak RSS that [`RSS_TARGET`] holds it against, in MiB.
pub(crate) const RSS_TARGET_MIB: f64 = 64.0;
/// Peak RSS of the server, in any phase and at any size, against [`RSS_TARGET_MIB`]: below 1.
pub(crate) const RSS_TARGET: Target = (Op::Below, 1.0);

/// The number at `ptr` in `v`.
pub(crate) fn f(v: &Value, ptr: &str) -> Option<f64> {
    v.pointer(ptr).and_then(Value::as_f64)
}

/// `a ÷ b` with two decimals, or `n/a`.
pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".into(),
    }
}

/// `v` with `decimals` decimals, or `n/a`.
pub(crate) fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.decimals$}"))
}

/// How a ratio is held against its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `≥ bound`.
    AtLeast,
    /// `≤ bound`.
    AtMost,
    /// `< bound`.
    Below,
}

impl Op {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Self::AtLeast => "≥",
            Self::AtMost => "≤",
            Self::Below => "<",
        }
    }

    pub(crate) fn met(self, ratio: f64, bound: f64) -> bool {
        match self {
            Self::AtLeast => ratio >= bound,
            Self::AtMost => ratio <= bound,
            Self::Below => ratio < bound,
        }
    }
}

/// A target for a ratio.
pub(crate) type Target = (Op, f64);

/// The target cell: the target and whether this run met it, judged on the exact ratio `a ÷ b`.
pub(crate) fn target_cell(a: Option<f64>, b: Option<f64>, target: Target) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => target_cell_ratio(Some(a / b), target),
        _ => target_cell_ratio(None, target),
    }
}

/// The target cell for a ratio. A miss says by how much, with the exact ratio; so does a
/// hit whose two printed decimals would read as a miss.
pub(crate) fn target_cell_ratio(exact: Option<f64>, (op, bound): Target) -> String {
    let sym = op.symbol();
    let Some(exact) = exact.filter(|r| r.is_finite()) else {
        return format!("{sym} {bound} (not measured)");
    };
    if !op.met(exact, bound) {
        let by = 100.0 * (exact - bound).abs() / bound;
        let how = if op == Op::AtLeast { "short" } else { "over" };
        return format!("{sym} {bound} ❌ ({exact:.4}: {by:.1} % {how})");
    }
    let shown = format!("{exact:.2}").parse::<f64>().unwrap_or(exact);
    if op.met(shown, bound) {
        format!("{sym} {bound} ✅")
    } else {
        format!("{sym} {bound} ✅ ({exact:.4})")
    }
}
