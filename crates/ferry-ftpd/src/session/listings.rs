//! Directory listings over the data connection: `LIST`, `NLST`, `MLSD`.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_core::{Operation, UserFs};
use ferry_proto::Reply;
use ferry_proto::command::{Command, ListArgs};
use ferry_proto::listing::{self, EntryKind, MlsxRole};
use ferry_vfs::Metadata;
use ferry_vfs::VPath;
use tokio::io::AsyncWriteExt;

use crate::pump::PumpError;
use crate::replies::storage_error;
use crate::tls::Stream;

use super::*;

impl Session {
    /// Start reading what `args` names: a directory's entries in name order, as a stream
    /// (see [`Listing`]), or a single file's. Errors before anything is read become a reply.
    /// `known` is the named path's metadata when the caller has just read it.
    pub(super) async fn open_listing(
        &self,
        args: &ListArgs,
        known: Option<Metadata>,
    ) -> Result<Listing, Reply> {
        let (path, fs) = self.target(Operation::List, args.path.as_deref().unwrap_or(""))?;
        let meta = match known {
            Some(meta) => meta,
            None => fs.describe(&path).await.map_err(|e| storage_error(&e))?,
        };
        if meta.kind != ferry_vfs::EntryKind::Dir {
            let name = path.file_name().unwrap_or("").to_string();
            return Ok(Listing {
                dir: None,
                file: Some(meta.into_entry(name)),
                stream: None,
                all: args.all,
                path,
            });
        }
        let stream = fs.list_sorted(&path).await.map_err(|e| storage_error(&e))?;
        Ok(Listing {
            dir: Some(meta),
            file: None,
            stream: Some(stream),
            all: args.all,
            path,
        })
    }

    pub(super) async fn cmd_list(&mut self, args: ListArgs, style: ListStyle) -> io::Result<Flow> {
        let fs = match self.authorized(Operation::List) {
            Ok(fs) => fs,
            Err(r) => {
                self.send(&r).await?;
                return Ok(Flow::Continue);
            }
        };
        let mut known = None;
        if style == ListStyle::Mlsd {
            // MLSD names a directory; a file is an error (RFC 3659 §7.2). What is read here
            // serves the listing too.
            if let Ok(path) = self.resolve(args.path.as_deref().unwrap_or("")) {
                {
                    if let Ok(m) = fs.describe(&path).await {
                        if m.kind != ferry_vfs::EntryKind::Dir {
                            self.send(&Reply::new(
                                501,
                                "MLSD needs a directory; use MLST for a file.",
                            ))
                            .await?;
                            return Ok(Flow::Continue);
                        }
                        known = Some(m);
                    }
                }
            }
        }
        if !self.data_ready().await? {
            return Ok(Flow::Continue);
        }
        let mut listing = match self.open_listing(&args, known).await {
            Ok(l) => l,
            Err(reply) => {
                self.send(&reply).await?;
                return Ok(Flow::Continue);
            }
        };
        let prefix = match (&args.path, style, &listing.dir) {
            (Some(p), ListStyle::Names, Some(_)) if !p.is_empty() => {
                Some(format!("{}/", p.trim_end_matches('/')))
            }
            _ => None,
        };
        let facts = self.facts;
        let what = format!("listing of {}", listing.path);
        let job = move |mut stream: Stream, progress: Arc<AtomicU64>| async move {
            let now = unix_now();
            let mut buf = Vec::with_capacity(64 * 1024);
            if style == ListStyle::Mlsd {
                if let Some(dir) = listing.dir.clone() {
                    let perm = perm_facts(&fs, EntryKind::Dir);
                    listing::format_mlsx_line(
                        &listed(dir.into_entry(".".to_string())),
                        MlsxRole::Cdir,
                        &facts,
                        &perm,
                        &mut buf,
                    );
                }
            }
            let perm_file = perm_facts(&fs, EntryKind::File);
            let perm_dir = perm_facts(&fs, EntryKind::Dir);
            let mut sent = 0u64;
            // Lines go out as the directory is read: the first bytes leave long before a
            // large directory has been read to the end.
            while let Some(chunk) = listing.next_chunk().await {
                let chunk = chunk.map_err(|e| PumpError::Local(io::Error::other(e.message)))?;
                for entry in &chunk {
                    match style {
                        ListStyle::Long => listing::format_list_line(entry, now, &mut buf),
                        ListStyle::Names => {
                            if let Some(p) = &prefix {
                                buf.extend_from_slice(p.as_bytes());
                            }
                            listing::format_nlst_line(&entry.name, &mut buf)
                        }
                        ListStyle::Mlsd => {
                            let perm = if entry.kind == EntryKind::Dir {
                                &perm_dir
                            } else {
                                &perm_file
                            };
                            listing::format_mlsx_line(
                                entry,
                                MlsxRole::Entry,
                                &facts,
                                perm,
                                &mut buf,
                            )
                        }
                    }
                    if buf.len() >= 60 * 1024 {
                        stream.write_all(&buf).await.map_err(PumpError::Network)?;
                        sent += buf.len() as u64;
                        progress.store(sent, Ordering::Relaxed);
                        buf.clear();
                    }
                }
            }
            stream.write_all(&buf).await.map_err(PumpError::Network)?;
            sent += buf.len() as u64;
            stream.shutdown().await.map_err(PumpError::Network)?;
            Ok(transfers::Done::from(sent))
        };
        self.start_transfer(
            what,
            transfers::TransferKind::Listing,
            "Here comes the directory listing.",
            "Directory send OK.".to_string(),
            None,
            job,
        )
        .await?;
        Ok(Flow::Continue)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListStyle {
    Long,
    Names,
    Mlsd,
}

/// What a listing command shows, read as it is sent.
pub(super) struct Listing {
    pub(super) path: VPath,
    /// Metadata of the listed directory, `None` when a single file was listed.
    pub(super) dir: Option<Metadata>,
    /// The file listed, when it is one.
    file: Option<ferry_vfs::Entry>,
    /// The directory's entries in name order, when a directory is listed.
    stream: Option<ferry_vfs::EntryStream>,
    /// Whether dot files are shown (`-a`).
    all: bool,
}

impl Listing {
    /// The next entries to show, in name order; `None` at the end.
    pub(super) async fn next_chunk(&mut self) -> Option<ferry_vfs::Result<Vec<listing::Entry>>> {
        if let Some(file) = self.file.take() {
            return Some(Ok(vec![listed(file)]));
        }
        let chunk = match self.stream.as_mut()?.next().await? {
            Ok(chunk) => chunk,
            Err(e) => return Some(Err(e)),
        };
        let all = self.all;
        let shown = chunk
            .into_iter()
            .filter(|e| all || !e.name.starts_with('.'))
            .map(listed)
            .collect();
        Some(Ok(shown))
    }

    /// Every entry (for `STAT`, whose answer is one reply).
    pub(super) async fn collect(mut self) -> ferry_vfs::Result<Vec<listing::Entry>> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next_chunk().await {
            all.extend(chunk?);
        }
        Ok(all)
    }
}

/// A storage entry as FTP listings show it.
pub(super) fn listed(e: ferry_vfs::Entry) -> listing::Entry {
    listing::Entry {
        name: e.name,
        kind: listed_kind(e.kind),
        size: e.size,
        mtime: e.mtime,
        mode: e.mode,
        nlink: e.nlink,
        unique: e.unique.map(|u| match u {
            ferry_vfs::Unique::DevIno { dev, ino } => listing::Unique::DevIno { dev, ino },
            ferry_vfs::Unique::Id(id) => listing::Unique::Id(id),
        }),
    }
}

/// A storage entry kind as FTP listings show it.
pub(super) fn listed_kind(kind: ferry_vfs::EntryKind) -> EntryKind {
    match kind {
        ferry_vfs::EntryKind::File => EntryKind::File,
        ferry_vfs::EntryKind::Dir => EntryKind::Dir,
        ferry_vfs::EntryKind::Symlink => EntryKind::Symlink,
        ferry_vfs::EntryKind::Other => EntryKind::Other,
    }
}

/// `STAT` takes `ls`-style flags too (`STAT -la dir`).
pub(super) fn parse_stat_args(arg: &str) -> ListArgs {
    match ferry_proto::command::parse(format!("LIST {arg}").as_bytes()) {
        Ok(Command::List(args)) => args,
        _ => ListArgs {
            all: false,
            long: true,
            path: Some(arg.to_string()),
        },
    }
}

/// RFC 3659 `perm` fact letters for this user and entry kind.
pub(super) fn perm_facts(fs: &UserFs, kind: EntryKind) -> String {
    let may = |op| fs.allows(op);
    let letters: &[(bool, &str)] = match kind {
        EntryKind::Dir => &[
            (may(Operation::Write), "c"),
            (may(Operation::Delete), "d"),
            (may(Operation::List), "el"),
            (may(Operation::Rename), "f"),
            (may(Operation::MakeDir), "m"),
            (may(Operation::Delete), "p"),
        ],
        _ => &[
            (may(Operation::Write), "a"),
            (may(Operation::Delete), "d"),
            (may(Operation::Rename), "f"),
            (may(Operation::Read), "r"),
            (may(Operation::Write), "w"),
        ],
    };
    letters
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, l)| *l)
        .collect()
}
