//! Navigation and file commands: `CWD`, `MKD`, `RMD`, `DELE`, `RNFR`/`RNTO`, `SIZE`, `MDTM`,
//! `MFMT`, `MLST`, `STAT path`.

use ferry_core::{Operation, UserFs};
use ferry_proto::Reply;
use ferry_proto::listing::{self, MlsxRole};
use ferry_vfs::EntryKind;
use ferry_vfs::VPath;
use ferry_vfs::{ErrorKind, Metadata};

use tracing::info;

use crate::replies::{path_error, permission_denied, storage_error};

use super::*;

impl Session {
    pub(super) fn resolve(&self, arg: &str) -> Result<VPath, Reply> {
        self.cwd.resolve(arg).map_err(|e| path_error(&e))
    }

    /// The prologue of file commands: `op` authorized (refused before anything else happens),
    /// `arg` resolved, the user's storage.
    pub(super) fn target(&self, op: Operation, arg: &str) -> Result<(VPath, UserFs), Reply> {
        let fs = self.authorized(op)?;
        let path = self.resolve(arg)?;
        Ok((path, fs))
    }

    /// The user's storage once `op` is authorized; the refusal as a reply.
    pub(super) fn authorized(&self, op: Operation) -> Result<UserFs, Reply> {
        let fs = self.user_fs().ok_or_else(not_logged_in)?;
        fs.authorize(op).map_err(|_| permission_denied())?;
        Ok(fs.clone())
    }

    pub(super) async fn cmd_cwd(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, fs) = self.target(Operation::Enter, arg)?;
        match fs.enter(&path).await {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::NotADirectory => {
                return Err(Reply::new(550, "Not a directory."));
            }
            Err(e) => return Err(storage_error(&e)),
        }
        self.cwd = path;
        Ok(Reply::new(
            250,
            format!("Directory changed to {}.", self.cwd),
        ))
    }

    pub(super) async fn cmd_mkd(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, fs) = self.target(Operation::MakeDir, arg)?;
        fs.mkdir(&path).await.map_err(|e| storage_error(&e))?;
        info!(path = %path, "directory created");
        Ok(Reply::new(257, format!("{} created.", path.quoted())))
    }

    pub(super) async fn cmd_rmd(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, fs) = self.target(Operation::Delete, arg)?;
        fs.rmdir(&path).await.map_err(|e| storage_error(&e))?;
        info!(path = %path, "directory removed");
        Ok(Reply::new(250, "Directory removed."))
    }

    pub(super) async fn cmd_dele(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, fs) = self.target(Operation::Delete, arg)?;
        fs.remove_file(&path).await.map_err(|e| storage_error(&e))?;
        info!(path = %path, "file deleted");
        Ok(Reply::new(250, "File deleted."))
    }

    pub(super) async fn cmd_rnfr(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, fs) = self.target(Operation::Rename, arg)?;
        fs.rename_source(&path)
            .await
            .map_err(|e| storage_error(&e))?;
        self.rename_from = Some(path);
        Ok(Reply::new(350, "Ready for RNTO."))
    }

    pub(super) async fn cmd_rnto(
        &mut self,
        arg: &str,
        from: Option<VPath>,
    ) -> Result<Reply, Reply> {
        let Some(from) = from else {
            return Err(Reply::new(503, "RNTO must come right after RNFR."));
        };
        let (to, fs) = self.target(Operation::Rename, arg)?;
        fs.rename(&from, &to).await.map_err(|e| storage_error(&e))?;
        info!(from = %from, to = %to, "renamed");
        Ok(Reply::new(250, "Rename successful."))
    }

    pub(super) async fn cmd_size(&mut self, arg: &str) -> Reply {
        match self.file_metadata(arg).await {
            Ok((_, m)) => Reply::new(213, m.size.to_string()),
            Err(r) => r,
        }
    }

    pub(super) async fn cmd_mdtm(&mut self, arg: &str) -> Reply {
        match self.file_metadata(arg).await {
            Ok((_, m)) => Reply::new(213, listing::format_mdtm(m.mtime)),
            Err(r) => r,
        }
    }

    /// Metadata of a plain file named by `arg` ([`Operation::Stat`]).
    pub(super) async fn file_metadata(&self, arg: &str) -> Result<(VPath, Metadata), Reply> {
        let (path, fs) = self.target(Operation::Stat, arg)?;
        match fs.stat(&path).await {
            Ok(m) if m.kind == EntryKind::Dir => Err(Reply::new(550, "Not a plain file.")),
            Ok(m) => Ok((path, m)),
            Err(e) => Err(storage_error(&e)),
        }
    }

    pub(super) async fn cmd_site(&mut self, site: SiteCommand) -> Result<Reply, Reply> {
        match site {
            SiteCommand::Chmod { mode, path } => {
                let (target, fs) = self.target(Operation::SetAttributes, &path)?;
                // Never setuid, setgid or sticky from a client.
                let mode = mode & 0o777;
                fs.set_mode(&target, mode)
                    .await
                    .map_err(|e| storage_error(&e))?;
                info!(path = %target, mode = format_args!("{mode:o}"), "permissions changed");
                Ok(Reply::new(200, "SITE CHMOD command successful."))
            }
            SiteCommand::Help => Ok(Reply::multi(
                214,
                vec![
                    "SITE commands recognized:".to_string(),
                    " CHMOD HELP".to_string(),
                    "End of SITE help.".to_string(),
                ],
            )),
            SiteCommand::Other(name) => {
                Err(Reply::new(502, format!("SITE {name} not implemented.")))
            }
        }
    }

    pub(super) async fn cmd_mfmt(&mut self, unix_secs: i64, arg: &str) -> Result<Reply, Reply> {
        let (path, fs) = self.target(Operation::SetAttributes, arg)?;
        fs.set_mtime(&path, unix_secs)
            .await
            .map_err(|e| storage_error(&e))?;
        let when = listing::format_mdtm(unix_secs);
        Ok(Reply::new(213, format!("Modify={when}; {arg}")))
    }

    pub(super) async fn cmd_mlst(&mut self, arg: Option<&str>) -> Reply {
        let (path, fs) = match self.target(Operation::List, arg.unwrap_or("")) {
            Ok(t) => t,
            Err(r) => return r,
        };
        match fs.describe(&path).await {
            Ok(m) => {
                let name = arg.map(str::to_string).unwrap_or_else(|| path.to_string());
                let perm = perm_facts(&fs, listed_kind(m.kind));
                let entry = listed(m.into_entry(name));
                let mut line = Vec::new();
                listing::format_mlsx_line(&entry, MlsxRole::Entry, &self.facts, &perm, &mut line);
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                Reply::multi(
                    250,
                    vec![
                        format!("Listing {}", path),
                        format!(" {text}"),
                        "End".to_string(),
                    ],
                )
            }
            Err(e) => storage_error(&e),
        }
    }

    pub(super) async fn cmd_stat_path(&mut self, arg: &str) -> Reply {
        if let Err(r) = self.authorized(Operation::List) {
            return r;
        }
        let args = parse_stat_args(arg);
        let entries = match self.open_listing(&args, None).await {
            Ok(listing) => match listing.collect().await {
                Ok(entries) => entries,
                Err(e) => return storage_error(&e),
            },
            Err(r) => return r,
        };
        let now = unix_now();
        let mut lines = vec![format!(
            "Status of {}:",
            args.path.as_deref().unwrap_or(".")
        )];
        let mut buf = Vec::new();
        for entry in &entries {
            buf.clear();
            listing::format_list_line(entry, now, &mut buf);
            lines.push(format!(" {}", String::from_utf8_lossy(&buf).trim_end()));
        }
        lines.push("End of status".to_string());
        Reply::multi(213, lines)
    }
}
