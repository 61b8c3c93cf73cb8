//! Listing formatters over a 10,000-entry directory, as the server streams them (`LIST`,
//! `MLSD`, `NLST`), and the client's `LIST` line parser. Throughput is per entry.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_proto::listing::{
    Entry, EntryKind, MlstFacts, MlsxRole, Unique, format_list_line, format_mlsx_line,
    format_nlst_line, parse_list_line,
};

const ENTRIES: usize = 10_000;
/// 2026-11-28 03:08:23 UTC.
const NOW: i64 = 1_795_748_903;

fn directory() -> Vec<Entry> {
    (0..ENTRIES)
        .map(|i| Entry {
            name: format!("entry-{i:06}.dat"),
            kind: if i % 10 == 0 {
                EntryKind::Dir
            } else {
                EntryKind::File
            },
            size: (i as u64 * 7919) % 10_000_000,
            // Half recent (time of day shown), half older (year shown).
            mtime: NOW - (i as i64 % 2) * 400 * 86_400 - i as i64 * 37,
            mode: if i % 10 == 0 { 0o755 } else { 0o644 },
            nlink: 1,
            unique: Some(Unique::DevIno {
                dev: 0x803,
                ino: i as u64,
            }),
        })
        .collect()
}

fn bench_listing(c: &mut Criterion) {
    let dir = directory();
    let mut g = c.benchmark_group("listing_10000");
    g.throughput(Throughput::Elements(ENTRIES as u64));
    // One reused buffer, flushed every 64 KiB, as a streaming server would.
    g.bench_function("format_list", |b| {
        let mut out = Vec::with_capacity(80 * 1024);
        b.iter(|| {
            let mut total = 0;
            for e in &dir {
                format_list_line(e, NOW, &mut out);
                if out.len() >= 64 * 1024 {
                    total += out.len();
                    out.clear();
                }
            }
            total += out.len();
            out.clear();
            black_box(total)
        })
    });
    g.bench_function("format_mlsd", |b| {
        let facts = MlstFacts::default();
        let mut out = Vec::with_capacity(80 * 1024);
        b.iter(|| {
            let mut total = 0;
            for e in &dir {
                format_mlsx_line(e, MlsxRole::Entry, &facts, "adfrw", &mut out);
                if out.len() >= 64 * 1024 {
                    total += out.len();
                    out.clear();
                }
            }
            total += out.len();
            out.clear();
            black_box(total)
        })
    });
    g.bench_function("format_nlst", |b| {
        let mut out = Vec::with_capacity(80 * 1024);
        b.iter(|| {
            for e in &dir {
                format_nlst_line(&e.name, &mut out);
            }
            let n = out.len();
            out.clear();
            black_box(n)
        })
    });
    let mut text = Vec::new();
    for e in &dir {
        format_list_line(e, NOW, &mut text);
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    g.bench_function("parse_list", |b| {
        b.iter(|| {
            text.lines()
                .filter_map(|l| parse_list_line(black_box(l), NOW))
                .count()
        })
    });
    g.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = quick();
    targets = bench_listing
}
criterion_main!(benches);
