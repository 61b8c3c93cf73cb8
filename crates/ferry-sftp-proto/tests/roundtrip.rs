//! Every message encodes and decodes back to itself; hostile bytes give errors, never panics.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use ferry_sftp_proto::attrs::{Owner, Times};
use ferry_sftp_proto::ext;
use ferry_sftp_proto::{
    Attrs, ClientMessage, DecodeError, Extended, Extension, FrameError, Handle, Name, OpenFlags,
    Request, Response, ServerMessage, Status, StatusCode, split_packet,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn handle() -> impl Strategy<Value = Handle> {
    bytes(257).prop_map(Handle)
}

fn extension() -> impl Strategy<Value = Extension> {
    (bytes(20), bytes(20)).prop_map(|(name, data)| Extension { name, data })
}

fn attrs() -> impl Strategy<Value = Attrs> {
    (
        any::<Option<u64>>(),
        any::<Option<(u32, u32)>>(),
        any::<Option<u32>>(),
        any::<Option<(u32, u32)>>(),
        vec(extension(), 0..3),
    )
        .prop_map(|(size, owner, permissions, times, extended)| Attrs {
            size,
            owner: owner.map(|(uid, gid)| Owner { uid, gid }),
            permissions,
            times: times.map(|(atime, mtime)| Times { atime, mtime }),
            extended,
        })
}

const KNOWN_EXTENSIONS: [&str; 9] = [
    ext::POSIX_RENAME,
    ext::STATVFS,
    ext::FSTATVFS,
    ext::FSYNC,
    ext::HARDLINK,
    ext::LIMITS,
    ext::LSETSTAT,
    ext::EXPAND_PATH,
    ext::COPY_DATA,
];

fn extended() -> impl Strategy<Value = Extended> {
    prop_oneof![
        (bytes(40), bytes(40)).prop_map(|(from, to)| Extended::PosixRename { from, to }),
        bytes(40).prop_map(|path| Extended::StatVfs { path }),
        handle().prop_map(|handle| Extended::FstatVfs { handle }),
        handle().prop_map(|handle| Extended::Fsync { handle }),
        (bytes(40), bytes(40)).prop_map(|(from, to)| Extended::Hardlink { from, to }),
        Just(Extended::Limits),
        (bytes(40), attrs()).prop_map(|(path, attrs)| Extended::Lsetstat { path, attrs }),
        bytes(40).prop_map(|path| Extended::ExpandPath { path }),
        (handle(), any::<u64>(), any::<u64>(), handle(), any::<u64>()).prop_map(
            |(read_from, read_offset, read_len, write_to, write_offset)| Extended::CopyData {
                read_from,
                read_offset,
                read_len,
                write_to,
                write_offset,
            }
        ),
        (bytes(30), bytes(60))
            .prop_filter("not a typed extension", |(name, _)| {
                !KNOWN_EXTENSIONS.iter().any(|k| k.as_bytes() == &name[..])
            })
            .prop_map(|(name, data)| Extended::Unknown { name, data }),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    let path = || bytes(64);
    prop_oneof![
        (path(), any::<u32>(), attrs()).prop_map(|(path, f, attrs)| Request::Open {
            path,
            flags: OpenFlags(f),
            attrs
        }),
        handle().prop_map(|handle| Request::Close { handle }),
        (handle(), any::<u64>(), any::<u32>()).prop_map(|(handle, offset, len)| Request::Read {
            handle,
            offset,
            len
        }),
        (handle(), any::<u64>(), bytes(300)).prop_map(|(handle, offset, data)| {
            Request::Write {
                handle,
                offset,
                data,
            }
        }),
        path().prop_map(|path| Request::Lstat { path }),
        handle().prop_map(|handle| Request::Fstat { handle }),
        (path(), attrs()).prop_map(|(path, attrs)| Request::Setstat { path, attrs }),
        (handle(), attrs()).prop_map(|(handle, attrs)| Request::Fsetstat { handle, attrs }),
        path().prop_map(|path| Request::Opendir { path }),
        handle().prop_map(|handle| Request::Readdir { handle }),
        path().prop_map(|path| Request::Remove { path }),
        (path(), attrs()).prop_map(|(path, attrs)| Request::Mkdir { path, attrs }),
        path().prop_map(|path| Request::Rmdir { path }),
        path().prop_map(|path| Request::Realpath { path }),
        path().prop_map(|path| Request::Stat { path }),
        (path(), path()).prop_map(|(from, to)| Request::Rename { from, to }),
        path().prop_map(|path| Request::Readlink { path }),
        (path(), path()).prop_map(|(target, link)| Request::Symlink { target, link }),
        extended().prop_map(Request::Extended),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (any::<u32>(), vec(extension(), 0..4)).prop_map(|(version, extensions)| {
            ClientMessage::Init {
                version,
                extensions,
            }
        }),
        (any::<u32>(), request()).prop_map(|(id, request)| ClientMessage::Request { id, request }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (any::<u32>(), bytes(80), bytes(8)).prop_map(|(c, message, language)| {
            Response::Status(Status {
                code: StatusCode(c),
                message,
                language,
            })
        }),
        handle().prop_map(Response::Handle),
        bytes(300).prop_map(Response::Data),
        vec(
            (bytes(40), bytes(80), attrs()).prop_map(|(filename, longname, attrs)| Name {
                filename,
                longname,
                attrs
            }),
            0..5
        )
        .prop_map(Response::Name),
        attrs().prop_map(Response::Attrs),
        bytes(100).prop_map(Response::ExtendedReply),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (any::<u32>(), vec(extension(), 0..4)).prop_map(|(version, extensions)| {
            ServerMessage::Version {
                version,
                extensions,
            }
        }),
        (any::<u32>(), response())
            .prop_map(|(id, response)| ServerMessage::Response { id, response }),
    ]
}

/// Frame `encoded` back out of a stream and return the packet body.
fn one_packet(encoded: &BytesMut) -> Bytes {
    let mut stream = encoded.clone();
    let packet = split_packet(&mut stream, u32::MAX).unwrap().unwrap();
    assert!(stream.is_empty(), "one message is one packet");
    packet
}

/// `Handle`s over 256 bytes are refused when decoded; the generators may make them.
fn handles_ok(m: &ClientMessage) -> bool {
    let ok = |h: &Handle| h.0.len() <= 256;
    match m {
        ClientMessage::Request { request, .. } => match request {
            Request::Extended(Extended::CopyData {
                read_from,
                write_to,
                ..
            }) => ok(read_from) && ok(write_to),
            r => r.handle().is_none_or(ok),
        },
        ClientMessage::Init { .. } => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn client_messages_roundtrip(m in client_message()) {
        let mut out = BytesMut::new();
        m.encode(&mut out);
        let decoded = ClientMessage::decode(one_packet(&out));
        if handles_ok(&m) {
            prop_assert_eq!(decoded, Ok(m));
        } else {
            let is_malformed = matches!(decoded, Err(DecodeError::Malformed { .. }));
            prop_assert!(is_malformed);
        }
    }

    #[test]
    fn server_messages_roundtrip(m in server_message()) {
        let mut out = BytesMut::new();
        m.encode(&mut out);
        let decoded = ServerMessage::decode(one_packet(&out));
        let long_handle = matches!(&m, ServerMessage::Response { response: Response::Handle(h), .. } if h.0.len() > 256);
        if long_handle {
            let is_malformed = matches!(decoded, Err(DecodeError::Malformed { .. }));
            prop_assert!(is_malformed);
        } else {
            prop_assert_eq!(decoded, Ok(m));
        }
    }

    /// Cutting a valid request anywhere gives an error carrying its id (once the id is in),
    /// never a panic or a different request.
    #[test]
    fn truncated_requests_are_malformed(m in client_message(), cut in any::<prop::sample::Index>()) {
        let mut out = BytesMut::new();
        m.encode(&mut out);
        let packet = one_packet(&out);
        let at = cut.index(packet.len());
        let decoded = ClientMessage::decode(packet.slice(..at));
        match (&m, decoded) {
            // Pairs run to the end of INIT: a cut between pairs is a shorter valid INIT.
            (ClientMessage::Init { .. }, Ok(ClientMessage::Init { .. })) => {}
            // An unknown extension's data runs to the end of the packet too.
            (ClientMessage::Request { request: Request::Extended(Extended::Unknown { .. }), .. }, Ok(_)) => {}
            // Limits has no arguments; nothing to cut past its name.
            (_, Ok(other)) => prop_assert!(false, "cut at {} decoded as {:?}", at, other),
            (ClientMessage::Request { id, .. }, Err(e)) => {
                if at >= 5 { prop_assert_eq!(e.id(), Some(*id)); }
            }
            (ClientMessage::Init { .. }, Err(_)) => {}
        }
    }

    /// Any bytes: decoding either side never panics, and what decodes re-encodes to a packet
    /// that decodes to the same value.
    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..600)) {
        let packet = Bytes::from(data);
        if let Ok(m) = ClientMessage::decode(packet.clone()) {
            let mut out = BytesMut::new();
            m.encode(&mut out);
            prop_assert_eq!(ClientMessage::decode(one_packet(&out)), Ok(m));
        }
        if let Ok(m) = ServerMessage::decode(packet) {
            let mut out = BytesMut::new();
            m.encode(&mut out);
            prop_assert_eq!(ServerMessage::decode(one_packet(&out)), Ok(m));
        }
    }

    /// Any split of a stream of packets into chunks yields the same packets.
    #[test]
    fn framing_is_independent_of_chunking(ms in vec(client_message(), 1..6), chunk in 1usize..50) {
        let mut stream = BytesMut::new();
        for m in &ms { m.encode(&mut stream); }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(p) = split_packet(&mut buf, u32::MAX).unwrap() {
                got.push(p);
            }
        }
        prop_assert_eq!(got.len(), ms.len());
        prop_assert!(buf.is_empty());
    }
}

fn req(id: u32, request: Request) -> Bytes {
    let mut out = BytesMut::new();
    ClientMessage::Request { id, request }.encode(&mut out);
    one_packet(&out)
}

#[test]
fn unknown_type_is_unsupported_with_its_id() {
    let e = ClientMessage::decode(Bytes::from_static(&[99, 0, 0, 0, 42, 1, 2, 3])).unwrap_err();
    assert_eq!(
        e,
        DecodeError::Unsupported {
            packet_type: 99,
            id: Some(42)
        }
    );
    assert_eq!(e.status_code(), StatusCode::OP_UNSUPPORTED);
    // A response type sent to a server is not a request either.
    let e = ClientMessage::decode(Bytes::from_static(&[101, 0, 0, 0, 1])).unwrap_err();
    assert_eq!(e.status_code(), StatusCode::OP_UNSUPPORTED);
}

#[test]
fn malformed_keeps_the_id_and_answers_bad_message() {
    let mut good = BytesMut::from(&req(7, Request::Stat { path: "/a".into() })[..]);
    good.extend_from_slice(b"junk");
    let e = ClientMessage::decode(good.freeze()).unwrap_err();
    assert_eq!(e.id(), Some(7));
    assert_eq!(e.status_code(), StatusCode::BAD_MESSAGE);
    assert_eq!(ClientMessage::decode(Bytes::new()), Err(DecodeError::Empty));
}

#[test]
fn write_data_is_a_slice_of_the_packet_not_a_copy() {
    let data = Bytes::from(vec![7u8; 32 * 1024]);
    let packet = req(
        1,
        Request::Write {
            handle: Handle("h".into()),
            offset: 0,
            data,
        },
    );
    let range = packet.as_ptr_range();
    let Ok(ClientMessage::Request {
        request: Request::Write { data, .. },
        ..
    }) = ClientMessage::decode(packet.clone())
    else {
        panic!("not a write");
    };
    assert!(range.contains(&data.as_ptr()));
}

#[test]
fn openssh_wire_bytes() {
    // OPEN "/f" with READ|WRITE|CREAT|TRUNC and permissions 0644, as OpenSSH's `put` sends it.
    let packet = req(
        3,
        Request::Open {
            path: "/f".into(),
            flags: OpenFlags(0x1a),
            attrs: Attrs {
                permissions: Some(0o644),
                ..Attrs::default()
            },
        },
    );
    assert_eq!(
        &packet[..],
        &[
            3, 0, 0, 0, 3, 0, 0, 0, 2, b'/', b'f', 0, 0, 0, 0x1a, 0, 0, 0, 4, 0, 0, 1, 0xa4
        ]
    );
    // SYMLINK carries the target first (OpenSSH's order).
    let packet = req(
        1,
        Request::Symlink {
            target: "t".into(),
            link: "l".into(),
        },
    );
    assert_eq!(&packet[5..], &[0, 0, 0, 1, b't', 0, 0, 0, 1, b'l']);
}

#[test]
fn extended_with_bad_arguments_is_malformed() {
    let mut out = BytesMut::new();
    ClientMessage::Request {
        id: 5,
        request: Request::Extended(Extended::Unknown {
            name: ext::POSIX_RENAME.into(),
            data: Bytes::from_static(&[0, 0, 0, 9]),
        }),
    }
    .encode(&mut out);
    let e = ClientMessage::decode(one_packet(&out)).unwrap_err();
    assert!(matches!(e, DecodeError::Malformed { id: Some(5), .. }));
}

#[test]
fn frame_limits() {
    let mut buf = BytesMut::from(&[0, 4, 0, 1][..]);
    assert_eq!(
        split_packet(&mut buf, 256 * 1024),
        Err(FrameError::TooLarge {
            len: 0x0004_0001,
            max: 256 * 1024
        })
    );
}
