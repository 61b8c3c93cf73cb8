//! The error is the reply: one table from failures to FTP replies.

use ferry_proto::Reply;
use ferry_vfs::PathError;
use ferry_vfs::{Error, ErrorKind};

/// The reply for a storage error.
pub(crate) fn storage_error(e: &Error) -> Reply {
    let code = match e.kind {
        ErrorKind::NotFound
        | ErrorKind::PermissionDenied
        | ErrorKind::AlreadyExists
        | ErrorKind::NotADirectory
        | ErrorKind::IsADirectory
        | ErrorKind::DirectoryNotEmpty => 550,
        ErrorKind::InsufficientStorage => 552,
        ErrorKind::InvalidName => 553,
        // Not for this storage (appending to an object, say): the command exists, not for
        // this argument.
        ErrorKind::Unsupported => 504,
        // The storage did not answer: transient, the client may try again.
        ErrorKind::Unavailable => 450,
        ErrorKind::Other => 451,
    };
    Reply::new(code, e.message.clone())
}

/// The reply for a path argument that can't name a file.
pub(crate) fn path_error(e: &PathError) -> Reply {
    Reply::new(553, format!("File name not allowed: {e}."))
}

/// The reply for an action the user's permissions don't allow.
pub(crate) fn permission_denied() -> Reply {
    Reply::new(550, "Permission denied.")
}
