//! Findings, their verdicts, the table and the JSON a probe prints, and the exit status the
//! worst verdict gives.

use std::fmt::Write as _;

// Server-chosen text (banners, replies) is shown with the CLI's escapes, so a hostile
// server cannot drive the terminal.
use crate::client::printable;

/// How a finding is judged. `Untested` is for a check the probe could not or would not
/// make; it counts as `Ok` for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verdict {
    Untested,
    Ok,
    Warning,
    Risk,
}

impl Verdict {
    /// The word in the table and the JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Verdict::Untested => "untested",
            Verdict::Ok => "ok",
            Verdict::Warning => "warning",
            Verdict::Risk => "risk",
        }
    }
}

/// One line of the report: a stable `id` (for scripts), what was checked, the verdict and
/// what was seen.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub(crate) id: &'static str,
    pub(crate) check: &'static str,
    pub(crate) verdict: Verdict,
    pub(crate) detail: String,
}

/// The findings of one probe, in the order they were made.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) target: String,
    pub(crate) findings: Vec<Finding>,
}

impl Report {
    /// A report on `target` (the URL, password removed).
    pub(crate) fn new(target: String) -> Report {
        Report {
            target,
            findings: Vec::new(),
        }
    }

    /// Record a finding.
    pub(crate) fn add(
        &mut self,
        id: &'static str,
        check: &'static str,
        verdict: Verdict,
        detail: impl Into<String>,
    ) {
        self.findings.push(Finding {
            id,
            check,
            verdict,
            detail: detail.into(),
        });
    }

    /// The worst verdict found.
    pub(crate) fn worst(&self) -> Verdict {
        self.findings
            .iter()
            .map(|f| f.verdict)
            .max()
            .unwrap_or(Verdict::Ok)
    }

    /// 0 when everything is ok (or untested), 10 for a warning, 20 for a risk.
    pub(crate) fn exit_code(&self) -> u8 {
        match self.worst() {
            Verdict::Untested | Verdict::Ok => 0,
            Verdict::Warning => 10,
            Verdict::Risk => 20,
        }
    }

    /// The human table: one row per finding, details wrapped under their row.
    pub(crate) fn table(&self) -> String {
        let width = self
            .findings
            .iter()
            .map(|f| f.check.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        let _ = writeln!(out, "probe of {}", printable(&self.target));
        for f in &self.findings {
            let _ = writeln!(
                out,
                "{:<8}  {:<width$}  {}",
                f.verdict.name(),
                f.check,
                printable(&f.detail)
            );
        }
        let worst = self.worst();
        let count = |v| self.findings.iter().filter(|f| f.verdict == v).count();
        let _ = writeln!(
            out,
            "{} ok, {} warning(s), {} risk(s), {} untested: worst is {}",
            count(Verdict::Ok),
            count(Verdict::Warning),
            count(Verdict::Risk),
            count(Verdict::Untested),
            if worst == Verdict::Untested {
                "ok"
            } else {
                worst.name()
            }
        );
        out
    }

    /// `{"target": ..., "worst": ..., "exit_code": ..., "findings": [{id, check, verdict, detail}]}`.
    pub(crate) fn json(&self) -> String {
        let findings: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "id": f.id,
                    "check": f.check,
                    "verdict": f.verdict.name(),
                    "detail": f.detail,
                })
            })
            .collect();
        let worst = match self.worst() {
            Verdict::Untested => Verdict::Ok,
            v => v,
        };
        serde_json::json!({
            "target": self.target,
            "worst": worst.name(),
            "exit_code": self.exit_code(),
            "findings": findings,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_verdict_decides_the_exit_code() {
        let mut r = Report::new("ftp://h".into());
        assert_eq!(r.exit_code(), 0);
        r.add("a", "a", Verdict::Untested, "");
        r.add("b", "b", Verdict::Ok, "");
        assert_eq!(r.exit_code(), 0);
        r.add("c", "c", Verdict::Warning, "");
        assert_eq!(r.exit_code(), 10);
        r.add("d", "d", Verdict::Risk, "");
        assert_eq!(r.exit_code(), 20);
        let json: serde_json::Value = serde_json::from_str(&r.json()).unwrap_or_default();
        assert_eq!(json["worst"], "risk");
        assert_eq!(json["findings"][2]["verdict"], "warning");
    }

    #[test]
    fn server_text_cannot_carry_control_characters_to_the_terminal() {
        let mut r = Report::new("ftp://h".into());
        r.add("banner", "banner", Verdict::Ok, "220 hi\u{1b}[2J\u{202e}");
        let t = r.table();
        assert!(!t.contains('\u{1b}') && !t.contains('\u{202e}'), "{t}");
    }
}
