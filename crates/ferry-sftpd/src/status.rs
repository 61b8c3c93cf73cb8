//! The one table from the core's errors to `SSH_FX_*` statuses.

use ferry_sftp_proto::{Status, StatusCode};
use ferry_vfs::{Error, ErrorKind};

/// The status code for an error kind. Version 3 has few codes: what is not "missing",
/// "refused" or "not offered" is a failure, and the message says which.
pub(crate) fn code_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NO_SUCH_FILE,
        ErrorKind::PermissionDenied => StatusCode::PERMISSION_DENIED,
        ErrorKind::Unsupported => StatusCode::OP_UNSUPPORTED,
        // NO_CONNECTION is the client's own code (it has no connection to the server); a
        // storage the server can't reach now is a failure, the message saying to try again.
        ErrorKind::Unavailable => StatusCode::FAILURE,
        ErrorKind::AlreadyExists
        | ErrorKind::NotADirectory
        | ErrorKind::IsADirectory
        | ErrorKind::DirectoryNotEmpty
        | ErrorKind::InsufficientStorage
        | ErrorKind::InvalidName
        | ErrorKind::Other => StatusCode::FAILURE,
    }
}

/// The `STATUS` answering a failed operation. Messages come from storage and the core, which
/// keep host paths out of them.
pub(crate) fn status_for(err: &Error) -> Status {
    let message = match err.kind {
        ErrorKind::Unavailable if !err.message.contains("try again") => {
            format!("{} (try again later)", err.message)
        }
        _ => err.message.clone(),
    };
    Status::new(code_for(err.kind), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_code_and_keeps_its_message() {
        let table = [
            (ErrorKind::NotFound, StatusCode::NO_SUCH_FILE),
            (ErrorKind::PermissionDenied, StatusCode::PERMISSION_DENIED),
            (ErrorKind::AlreadyExists, StatusCode::FAILURE),
            (ErrorKind::NotADirectory, StatusCode::FAILURE),
            (ErrorKind::IsADirectory, StatusCode::FAILURE),
            (ErrorKind::DirectoryNotEmpty, StatusCode::FAILURE),
            (ErrorKind::InsufficientStorage, StatusCode::FAILURE),
            (ErrorKind::InvalidName, StatusCode::FAILURE),
            (ErrorKind::Unsupported, StatusCode::OP_UNSUPPORTED),
            (ErrorKind::Unavailable, StatusCode::FAILURE),
            (ErrorKind::Other, StatusCode::FAILURE),
        ];
        for (kind, code) in table {
            let status = status_for(&Error::new(kind, "why"));
            assert_eq!(status.code, code, "{kind:?}");
            assert!(status.message.starts_with(b"why"), "{kind:?}");
        }
        let busy = status_for(&Error::new(ErrorKind::Unavailable, "Storage unreachable"));
        assert_eq!(&busy.message[..], b"Storage unreachable (try again later)");
    }
}
