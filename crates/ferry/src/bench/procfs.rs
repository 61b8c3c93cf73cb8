//! Server and bench resource use read from `/proc` (Linux): CPU seconds from `stat`, memory
//! from `smaps_rollup`, summed over a process tree so forking servers (one process per
//! session) are measured whole.

use std::collections::HashMap;

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on every Linux ABI).
const TICKS_PER_SEC: f64 = 100.0;

/// Fields of `/proc/PID/stat` that we use.
#[derive(Debug, Clone, Copy, Default)]
struct Stat {
    ppid: u32,
    /// utime + stime + cutime + cstime, in ticks: the process's own CPU time and that of
    /// every child it has reaped.
    ticks: u64,
}

fn read_stat(pid: &str) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<i64>().ok());
    let ticks = [11, 12, 13, 14]
        .iter()
        .map(|&i| num(i).unwrap_or(0).max(0) as u64)
        .sum();
    Some(Stat {
        ppid: u32::try_from(num(1)?).ok()?,
        ticks,
    })
}

/// The processes `roots` and all their live descendants.
pub(super) fn tree(roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(pid) = name.parse::<u32>() else {
                continue;
            };
            if let Some(st) = read_stat(name) {
                children.entry(st.ppid).or_default().push(pid);
            }
        }
    }
    let mut out: Vec<u32> = Vec::new();
    let mut todo: Vec<u32> = roots.to_vec();
    while let Some(pid) = todo.pop() {
        if out.contains(&pid) {
            continue;
        }
        out.push(pid);
        if let Some(c) = children.get(&pid) {
            todo.extend(c);
        }
    }
    out
}

/// CPU seconds (user + system, including reaped children) of `roots` and their descendants.
///
/// A process that exits between two readings moves its time into its parent's reaped-child
/// counters, so differences of this sum are right as long as the server reaps its children.
pub(super) fn tree_cpu_seconds(roots: &[u32]) -> f64 {
    tree(roots)
        .iter()
        .filter_map(|p| read_stat(&p.to_string()))
        .map(|s| s.ticks as f64 / TICKS_PER_SEC)
        .sum()
}

/// This process's own CPU seconds (user + system, all threads).
pub(super) fn self_cpu_seconds() -> f64 {
    read_stat("self").map_or(0.0, |s| s.ticks as f64 / TICKS_PER_SEC)
}

/// Resident and proportional memory, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Memory {
    pub(super) rss_kib: u64,
    pub(super) pss_kib: u64,
    pub(super) processes: u64,
}

/// `Rss` and `Pss` from `/proc/PID/smaps_rollup`, summed over `roots` and their descendants.
pub(super) fn tree_memory(roots: &[u32]) -> Memory {
    let mut m = Memory::default();
    for pid in tree(roots) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        m.processes += 1;
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(key), Some(val)) = (it.next(), it.next()) else {
                continue;
            };
            let val: u64 = val.parse().unwrap_or(0);
            match key {
                "Rss:" => m.rss_kib += val,
                "Pss:" => m.pss_kib += val,
                _ => {}
            }
        }
    }
    m
}

/// Machine-wide CPU ticks from the first line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct MachineTicks {
    /// Everything but idle and iowait (so softirq time spent on loopback traffic counts).
    pub(super) busy: u64,
    /// Time in softirq: network stack work that may be charged to no process.
    pub(super) softirq: u64,
    pub(super) total: u64,
}

/// Read [`MachineTicks`] now (zeros if `/proc/stat` is unreadable).
pub(super) fn machine_ticks() -> MachineTicks {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return MachineTicks::default();
    };
    let Some(cpu) = text.lines().next() else {
        return MachineTicks::default();
    };
    let f: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest times are inside user).
    let total: u64 = f.iter().take(8).sum();
    MachineTicks {
        busy: total.saturating_sub(at(3) + at(4)),
        softirq: at(6),
        total,
    }
}

/// Whether `pid` names a live process.
pub(super) fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        assert!(exists(me));
        assert!(tree(&[me]).contains(&me));
        let m = tree_memory(&[me]);
        assert!(m.rss_kib > 0 && m.processes >= 1, "{m:?}");
        assert!(self_cpu_seconds() >= 0.0);
    }
}
