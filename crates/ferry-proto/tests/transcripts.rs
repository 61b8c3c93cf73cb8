//! Whole conversations through the public API: a client's control stream split by
//! `LineBuffer` and parsed, a server's replies decoded by `ReplyDecoder`, and full directory
//! listings as real servers send them.

use std::net::{Ipv4Addr, SocketAddrV4};

use ferry_proto::command::{EpsvArg, ListArgs, ProtLevel, TransferType};
use ferry_proto::hostport::{parse_epsv_reply_text, parse_pasv_reply_text};
use ferry_proto::line::Line;
use ferry_proto::listing::{EntryKind, parse_list_line, parse_mlsx_line};
use ferry_proto::{Command, LineBuffer, ParseError, ReplyDecoder};

/// 2026-11-28 03:11:03 UTC.
const NOW: i64 = 1_795_835_463;

#[test]
fn client_session_through_line_buffer() {
    // What an FTPS client sends, chopped at awkward places as TCP may deliver it.
    let stream: &[u8] =
        b"AUTH TLS\r\nPBSZ 0\r\nPROT P\r\nUSER alice\r\nPASS s3cret pass\r\nSYST\r\nFEAT\r\n\
OPTS UTF8 ON\r\nPWD\r\nTYPE I\r\nEPSV\r\nLIST -la\r\nCWD /pub/my dir\r\nREST 1024\r\nEPSV\r\n\
RETR file name.iso\r\n\xff\xf4\xff\xf2ABOR\r\nMDTM x\nQUIT\r\n";
    let mut buf = LineBuffer::new(512);
    let mut cmds = Vec::new();
    for chunk in stream.chunks(7) {
        buf.extend(chunk);
        while let Some(line) = buf.next_line() {
            match line {
                Line::Complete(l) => cmds.push(ferry_proto::command::parse(&l)),
                Line::TooLong => panic!("no line is too long here"),
            }
        }
    }
    let want: Vec<Result<Command, ParseError>> = vec![
        Ok(Command::Auth("TLS".into())),
        Ok(Command::Pbsz(0)),
        Ok(Command::Prot(ProtLevel::Private)),
        Ok(Command::User("alice".into())),
        Ok(Command::Pass("s3cret pass".into())),
        Ok(Command::Syst),
        Ok(Command::Feat),
        Ok(Command::Opts {
            command: "UTF8".into(),
            args: Some("ON".into()),
        }),
        Ok(Command::Pwd),
        Ok(Command::Type(TransferType::Image)),
        Ok(Command::Epsv(EpsvArg::Any)),
        Ok(Command::List(ListArgs {
            all: true,
            long: true,
            path: None,
        })),
        Ok(Command::Cwd("/pub/my dir".into())),
        Ok(Command::Rest(1024)),
        Ok(Command::Epsv(EpsvArg::Any)),
        Ok(Command::Retr("file name.iso".into())),
        Ok(Command::Abor),
        Ok(Command::Mdtm("x".into())),
        Ok(Command::Quit),
    ];
    assert_eq!(cmds, want);
    assert_eq!(buf.pending(), 0);
}

#[test]
fn hostile_client_stays_bounded() {
    let mut buf = LineBuffer::new(64);
    let mut too_long = 0;
    for _ in 0..1000 {
        buf.extend(&[b'A'; 4096]);
        while let Some(line) = buf.next_line() {
            assert_eq!(line, Line::TooLong);
            too_long += 1;
        }
        assert!(buf.pending() <= 64);
    }
    buf.extend(b"\r\nNOOP\r\n");
    assert_eq!(buf.next_line(), Some(Line::Complete(b"NOOP".to_vec())));
    assert_eq!(too_long, 1);
}

#[test]
fn server_replies_through_decoder() {
    // vsftpd-like greeting and FEAT, then passive-mode answers in several servers' wording.
    let wire = b"220 (vsFTPd 3.0.5)\r\n\
211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n211 End\r\n\
227 Entering Passive Mode (127,0,0,1,39,16).\r\n\
227 =127,0,0,1,39,16\r\n\
229 Entering Extended Passive Mode (|||10000|)\r\n\
150-Accepted data connection\r\n150 3 bytes to download\r\n\
226 Transfer complete.\n";
    let mut dec = ReplyDecoder::default();
    let mut replies = Vec::new();
    for chunk in wire.chunks(5) {
        dec.extend(chunk);
        while let Some(r) = dec.next_reply().unwrap() {
            replies.push(r);
        }
    }
    let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
    assert_eq!(codes, [220, 211, 227, 227, 229, 150, 226]);
    assert_eq!(replies[1].lines.len(), 10);
    assert_eq!(replies[1].lines[5], " REST STREAM");
    let pasv = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 39 * 256 + 16);
    assert_eq!(parse_pasv_reply_text(&replies[2].text()), Ok(pasv));
    assert_eq!(parse_pasv_reply_text(&replies[3].text()), Ok(pasv));
    assert_eq!(parse_epsv_reply_text(&replies[4].text()), Ok(10000));
    assert_eq!(
        replies[5].lines,
        ["Accepted data connection", "3 bytes to download"]
    );
}

#[test]
fn vsftpd_listing() {
    let listing = "\
drwxr-xr-x    2 0        0            4096 Nov 28 03:08 incoming\r
-rw-r--r--    1 0        0        52428800 Jul 14  2024 50MB.zip\r
lrwxrwxrwx    1 0        0              11 Nov 20 11:42 latest -> releases/v2\r
-rw-r--r--    1 1000     1000          12 Nov 27 23:59 hello world.txt\r
";
    let entries: Vec<_> = listing
        .lines()
        .filter_map(|l| parse_list_line(l, NOW))
        .collect();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0].kind, EntryKind::Dir);
    assert_eq!(entries[1].size, Some(52_428_800));
    assert_eq!(entries[2].link_target.as_deref(), Some("releases/v2"));
    assert_eq!(entries[3].name, "hello world.txt");
}

#[test]
fn proftpd_listing() {
    let listing = "\
total 12
drwxr-xr-x   3 ftp      ftp          4096 Nov 28 03:08 .
drwxr-xr-x   5 ftp      ftp          4096 Jan  2  2025 ..
-rw-r--r--   1 ftp      ftp           170 Nov 28 03:08 welcome.msg
-rw-rw-r--   1 alice    staff    10485760 Dec 31  2025 backup.tar.gz
";
    let entries: Vec<_> = listing
        .lines()
        .filter_map(|l| parse_list_line(l, NOW))
        .collect();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, [".", "..", "welcome.msg", "backup.tar.gz"]);
}

#[test]
fn iis_listing() {
    let listing = "\
11-28-26  03:08AM       <DIR>          aspnet_client\r
07-14-24  10:15PM              1024 web.config\r
11-28-2026  11:59AM        123456789 Big Report 2026.xlsx\r
";
    let entries: Vec<_> = listing
        .lines()
        .filter_map(|l| parse_list_line(l, NOW))
        .collect();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].kind, EntryKind::Dir);
    assert_eq!(entries[1].size, Some(1024));
    assert_eq!(entries[2].name, "Big Report 2026.xlsx");
}

#[test]
fn mlsd_listing() {
    let listing = "\
type=cdir;modify=20261128030800;perm=flcdmpe; .\r
type=pdir;modify=20261128030800;perm=flcdmpe; ..\r
type=file;size=170;modify=20261128030800;perm=adfrw;unique=803U1E; welcome.msg\r
type=dir;modify=20250102000000;perm=flcdmpe; sub dir\r
";
    let entries: Vec<_> = listing.lines().filter_map(parse_mlsx_line).collect();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[2].size, Some(170));
    assert_eq!(entries[3].name, "sub dir");
}
