//! Control-channel parsing: one command line, a stream of lines split and parsed (server
//! side), and a stream of replies decoded (client side). Throughput is per command or reply.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_proto::line::Line;
use ferry_proto::{LineBuffer, ReplyDecoder, command};

/// A typical session's command mix.
const LINES: &[&str] = &[
    "USER alice",
    "PASS s3cret pass",
    "SYST",
    "FEAT",
    "OPTS UTF8 ON",
    "PWD",
    "TYPE I",
    "CWD /incoming/2026/november",
    "EPSV",
    "PASV",
    "PORT 127,0,0,1,117,48",
    "EPRT |2|::1|30000|",
    "SIZE reports/quarterly report.pdf",
    "MDTM reports/quarterly report.pdf",
    "REST 1048576",
    "RETR reports/quarterly report.pdf",
    "STOR uploads/photo 0001.jpg",
    "MLSD /incoming",
    "LIST -la",
    "MFMT 20261128030823 notes.txt",
    "RNFR old name.txt",
    "RNTO new name.txt",
    "NOOP",
    "QUIT",
];

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("command");
    g.throughput(Throughput::Elements(LINES.len() as u64));
    g.bench_function("parse_mix", |b| {
        b.iter(|| {
            for line in LINES {
                let _ = black_box(command::parse(black_box(line.as_bytes())));
            }
        })
    });
    g.bench_function("parse_retr", |b| {
        b.iter(|| command::parse(black_box(b"RETR reports/quarterly report.pdf")))
    });
    g.finish();

    // 1,000 commands arriving in 1,460-byte segments (one TCP MSS on loopback-ish paths).
    let mut stream = Vec::new();
    for i in 0..1000 {
        stream.extend_from_slice(LINES[i % LINES.len()].as_bytes());
        stream.extend_from_slice(b"\r\n");
    }
    let mut g = c.benchmark_group("control_stream");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("split_and_parse_1000", |b| {
        b.iter(|| {
            let mut buf = LineBuffer::new(8192);
            let mut n = 0usize;
            for seg in stream.chunks(1460) {
                buf.extend(seg);
                while let Some(line) = buf.next_line() {
                    if let Line::Complete(l) = line {
                        n += usize::from(command::parse(&l).is_ok());
                    }
                }
            }
            black_box(n)
        })
    });
    g.finish();

    // 1,000 replies as a server sends them, including multi-line FEAT answers.
    let mut replies = Vec::new();
    for i in 0..1000 {
        match i % 4 {
            0 => replies.extend_from_slice(b"229 Entering Extended Passive Mode (|||30017|)\r\n"),
            1 => replies.extend_from_slice(b"150 Opening BINARY mode data connection\r\n"),
            2 => replies.extend_from_slice(b"226 Transfer complete\r\n"),
            _ => replies.extend_from_slice(
                b"211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n MLST type*;size*;modify*;\r\n REST STREAM\r\n SIZE\r\n UTF8\r\n211 End\r\n",
            ),
        }
    }
    let mut g = c.benchmark_group("reply_stream");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("decode_1000", |b| {
        b.iter(|| {
            let mut d = ReplyDecoder::default();
            let mut n = 0usize;
            for seg in replies.chunks(1460) {
                d.extend(seg);
                while let Ok(Some(r)) = d.next_reply() {
                    n += r.lines.len();
                }
            }
            black_box(n)
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
    targets = bench_parse
}
criterion_main!(benches);
