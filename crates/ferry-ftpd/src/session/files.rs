//! Navigation and file commands: `CWD`, `MKD`, `RMD`, `DELE`, `RNFR`/`RNTO`, `SIZE`, `MDTM`,
//! `MFMT`, `MLST`, `STAT path`.

use std::sync::Arc;

use ferry_proto::Reply;
use ferry_proto::listing::{self, MlsxRole};
use ferry_vfs::EntryKind;
use ferry_vfs::VPath;
use ferry_vfs::{Metadata, Storage};

use tracing::info;

use crate::replies::{path_error, permission_denied, storage_error};

use super::*;

impl Session {
    pub(super) fn resolve(&self, arg: &str) -> Result<VPath, Reply> {
        self.cwd.resolve(arg).map_err(|e| path_error(&e))
    }

    /// The prologue of file commands: the permission `allowed`, `arg` resolved, the storage.
    pub(super) fn target(
        &self,
        allowed: bool,
        arg: &str,
    ) -> Result<(VPath, Arc<dyn Storage>), Reply> {
        if !allowed {
            return Err(permission_denied());
        }
        let path = self.resolve(arg)?;
        let storage = self.storage().ok_or_else(not_logged_in)?;
        Ok((path, storage))
    }

    pub(super) async fn cmd_cwd(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, storage) = self.target(true, arg)?;
        let meta = storage
            .metadata(&path)
            .await
            .map_err(|e| storage_error(&e))?;
        if meta.kind != EntryKind::Dir {
            return Err(Reply::new(550, "Not a directory."));
        }
        self.cwd = path;
        Ok(Reply::new(
            250,
            format!("Directory changed to {}.", self.cwd),
        ))
    }

    pub(super) async fn cmd_mkd(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, storage) = self.target(self.perms().mkdir, arg)?;
        storage.mkdir(&path).await.map_err(|e| storage_error(&e))?;
        info!(path = %path, "directory created");
        Ok(Reply::new(257, format!("{} created.", path.quoted())))
    }

    pub(super) async fn cmd_rmd(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, storage) = self.target(self.perms().delete, arg)?;
        if path.is_root() {
            return Err(Reply::new(550, "Cannot remove the root directory."));
        }
        storage.rmdir(&path).await.map_err(|e| storage_error(&e))?;
        info!(path = %path, "directory removed");
        Ok(Reply::new(250, "Directory removed."))
    }

    pub(super) async fn cmd_dele(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, storage) = self.target(self.perms().delete, arg)?;
        storage
            .remove_file(&path)
            .await
            .map_err(|e| storage_error(&e))?;
        info!(path = %path, "file deleted");
        Ok(Reply::new(250, "File deleted."))
    }

    pub(super) async fn cmd_rnfr(&mut self, arg: &str) -> Result<Reply, Reply> {
        let (path, storage) = self.target(self.perms().rename, arg)?;
        if path.is_root() {
            return Err(Reply::new(550, "Cannot rename the root directory."));
        }
        storage
            .metadata(&path)
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
        let (to, storage) = self.target(true, arg)?;
        storage
            .rename(&from, &to)
            .await
            .map_err(|e| storage_error(&e))?;
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

    /// Metadata of a plain file named by `arg`, checking the read/list permission.
    pub(super) async fn file_metadata(&self, arg: &str) -> Result<(VPath, Metadata), Reply> {
        let perms = self.perms();
        if !(perms.read || perms.list) {
            return Err(permission_denied());
        }
        let path = self.resolve(arg)?;
        let storage = self.storage().ok_or_else(not_logged_in)?;
        match storage.metadata(&path).await {
            Ok(m) if m.kind == EntryKind::Dir => Err(Reply::new(550, "Not a plain file.")),
            Ok(m) => Ok((path, m)),
            Err(e) => Err(storage_error(&e)),
        }
    }

    pub(super) async fn cmd_site(&mut self, site: SiteCommand) -> Result<Reply, Reply> {
        match site {
            SiteCommand::Chmod { mode, path } => {
                let (target, storage) = self.target(self.perms().write, &path)?;
                // Never setuid, setgid or sticky from a client.
                let mode = mode & 0o777;
                storage
                    .set_mode(&target, mode)
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
        let (path, storage) = self.target(self.perms().write, arg)?;
        storage
            .set_mtime(&path, unix_secs)
            .await
            .map_err(|e| storage_error(&e))?;
        let when = listing::format_mdtm(unix_secs);
        Ok(Reply::new(213, format!("Modify={when}; {arg}")))
    }

    pub(super) async fn cmd_mlst(&mut self, arg: Option<&str>) -> Reply {
        if !self.perms().list {
            return permission_denied();
        }
        let path = match self.resolve(arg.unwrap_or("")) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let Some(storage) = self.storage() else {
            return not_logged_in();
        };
        match storage.metadata(&path).await {
            Ok(m) => {
                let name = arg.map(str::to_string).unwrap_or_else(|| path.to_string());
                let perm = perm_facts(self.perms(), listed_kind(m.kind));
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
        if !self.perms().list {
            return permission_denied();
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
